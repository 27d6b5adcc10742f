# Sourced by `scripts/guest-assets.sh --nested-host` (which defines OUT, EPOCH, BUSYBOX, log, die and the
# functions of lib/debian-kernel.sh). Builds the kit scripts/kvm-vm boots under QEMU TCG where this machine has
# no /dev/kvm:
#
#   guest-assets/nested-host/vmlinuz          Debian 12's generic kernel (linux-image-amd64): unlike the cloud
#                                             kernel it has the 9p file system, and kvm_amd as a module
#   guest-assets/nested-host/initramfs.cpio   busybox-static, the modules below, and /init (kvm-vm-init.sh)
#
# The generic kernel is the nested host, not a guest under test: tests still boot the cloud kernel.

NESTED="$OUT/nested-host"
NESTED_META_PKG=linux-image-amd64
# kvm_amd: QEMU's TCG emulates AMD SVM with nested paging (and no VMX). 9p over virtio-pci: this machine's root
# and the checkout. veth: the multi-host tests' network namespaces.
NESTED_MODULES=(kvm_amd 9p 9pnet_virtio virtio_pci veth tun)

mkdir -p "$NESTED"
NPKG="$(resolve_kernel_pkg "$NESTED_META_PKG")"
NREL="${NPKG#linux-image-}"
if [[ "$(fetch_kernel_pkg "$NPKG" "$NESTED")" == fetched || ! -f $NESTED/vmlinuz ]]; then
  cp "$NESTED/root/boot/vmlinuz-$NREL" "$NESTED/vmlinuz"
  rm -f "$NESTED/.initramfs-stamp"
fi
NMODDIR="$NESTED/root/lib/modules/$NREL"
[[ -d $NMODDIR/kernel ]] || die "$NMODDIR/kernel missing: delete $NESTED and re-run"
mapfile -t NORDER < <(module_load_order "$NMODDIR" "${NESTED_MODULES[@]}")
for want in kvm_amd 9p 9pnet_virtio virtio_pci; do
  printf '%s\n' "${NORDER[@]}" | grep -q "/${want//_/[-_]}\.ko" || die "$NPKG has no module $want"
done

NINIT_SRC="$ROOT/scripts/lib/kvm-vm-init.sh"
NHASH="$( {
  sha256sum "$NINIT_SRC" "$ROOT/scripts/nested-host-assets.sh" "$ROOT/scripts/lib/debian-kernel.sh" "$BUSYBOX" |
    awk '{print $1}'
  cat "$NESTED/.kernel-stamp"
  printf '%s\n' "${NORDER[@]}"
} | sha256sum | awk '{print $1}')"
if [[ -f $NESTED/.initramfs-stamp && "$(cat "$NESTED/.initramfs-stamp")" == "$NHASH" && -f $NESTED/initramfs.cpio ]]; then
  log "nested host: up to date"
else
  log "nested host: building initramfs (${#NORDER[@]} modules)"
  NSTAGE="$(mktemp -d "$NESTED/.stage.XXXXXX")"
  trap 'rm -rf "$NSTAGE"' EXIT
  mkdir -p "$NSTAGE"/{bin,dev,proc,sys,newroot,share,lib/modules}
  cp "$BUSYBOX" "$NSTAGE/bin/busybox"
  ln -s busybox "$NSTAGE/bin/sh"
  stage_modules "$NMODDIR" "$NSTAGE/lib/modules" "${NORDER[@]}"
  install -m 0755 "$NINIT_SRC" "$NSTAGE/init"
  write_cpio "$NSTAGE" "$NESTED/initramfs.cpio" "$EPOCH"
  echo "$NHASH" >"$NESTED/.initramfs-stamp"
fi
echo "nested host kernel: $NESTED/vmlinuz"
echo "nested host initrd: $NESTED/initramfs.cpio"
