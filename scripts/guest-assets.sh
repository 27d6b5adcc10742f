#!/usr/bin/env bash
# Builds the guest kernel and initramfs used by the end-to-end tests, into guest-assets/ (gitignored).
# With --nested-host it builds instead the kit of the nested KVM host that scripts/kvm-vm boots under QEMU
# TCG where this machine has no /dev/kvm (guest-assets/nested-host/, see scripts/nested-host-assets.sh).
#
#   guest-assets/vmlinuz          Debian 12's cloud kernel (bzImage), from linux-image-<ver>-cloud-amd64
#   guest-assets/System.map       its symbol map (from the -dbg package; for reading a hung guest's RIP)
#   guest-assets/initramfs.cpio   busybox-static + the virtio modules + /init (below); uncompressed, because
#                                 inflating it is guest-kernel work, slow where that code is emulated (PVM)
#
# The kernel package is fetched with `apt-get download` and unpacked with `dpkg-deb -x`: nothing is installed
# on the host. Re-running does nothing when the outputs are up to date (a stamp records the package version
# and a hash of every input). The initramfs is reproducible: sorted newc cpio, owner 0:0, fixed mtimes.
#
# /init's contract (docs/BOOT.md): it mounts /proc, /sys and devtmpfs, loads the virtio modules when the
# command line has coalesce.modules=1, prints
#   COALESCE-GUEST: cpus=<nproc>, then the "processor" lines of /proc/cpuinfo and MemTotal,
# then runs the command given as  coalesce.cmd="<shell command>"  on the kernel command line (double quotes
# needed when it contains spaces; it cannot contain a double quote), printing
#   COALESCE-CMD-BEGIN  ...  COALESCE-CMD-EXIT=<status>
# or, without coalesce.cmd, arms the ACPI power button (poweroff when pressed) and starts a shell on the console
# (ttyS0). Either way it ends with `poweroff -f`.
#
# Environment: COALESCE_GUEST_ASSETS overrides the output directory; COALESCE_SYSTEM_MAP=0 skips the ~280 MB
# -dbg download that provides the real System.map.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${COALESCE_GUEST_ASSETS:-$ROOT/guest-assets}"
META_PKG=linux-image-cloud-amd64
# Fixed timestamp for every file in the initramfs (reproducible builds).
EPOCH=1700000000
# Modules wanted in the guest; their dependencies are added from modules.dep. Missing ones (built in, or
# absent from this kernel) are skipped.
WANTED_MODULES=(virtio virtio_ring virtio_mmio virtio_pci virtio_blk virtio_net virtio_console)
# The ACPI power button (fixed-feature button -> input event) for the interactive shell, so that
# `virsh shutdown` (the ACPI power button, docs/VIRSH.md) powers the guest off.
BUTTON_MODULES=(button evdev)

log() { echo "guest-assets: $*" >&2; }
die() { echo "guest-assets: error: $*" >&2; exit 1; }

for tool in apt-cache apt-get dpkg-deb cpio sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (run scripts/setup.sh)"
done
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || die "$BUSYBOX not found: install busybox-static (scripts/setup.sh)"
file_is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'INTERP'; }
file_is_static "$BUSYBOX" || die "$BUSYBOX is dynamically linked: install busybox-static, not busybox"
# shellcheck source=lib/debian-kernel.sh
source "$ROOT/scripts/lib/debian-kernel.sh"

mkdir -p "$OUT"
if [[ ${1:-} == --nested-host ]]; then
  # shellcheck source=nested-host-assets.sh
  source "$ROOT/scripts/nested-host-assets.sh"
  exit 0
fi
[[ $# -eq 0 ]] || die "unknown argument '$1' (usage: guest-assets.sh [--nested-host])"

# --- Kernel: download and extract unless the stamp says it is current. ---
KPKG="$(resolve_kernel_pkg "$META_PKG")"
KREL="${KPKG#linux-image-}"  # e.g. 6.1.0-56-cloud-amd64: the kernel release (uname -r)
KROOT="$OUT/kernel-root"
mkdir -p "$OUT/cloud"
if [[ -d $KROOT && ! -L $KROOT ]]; then rm -rf "$KROOT" "$OUT/.kernel-stamp"; fi  # layout before nested-host
ln -sfn cloud/root "$KROOT"
if [[ "$(fetch_kernel_pkg "$KPKG" "$OUT/cloud")" == fetched || ! -f $OUT/vmlinuz ]]; then
  cp "$KROOT/boot/vmlinuz-$KREL" "$OUT/vmlinuz"
  # The image package's System.map is a one-line stub; the real one is in the -dbg package (~280 MB to
  # download, once). Only that file is kept. Without it the stub stays: nothing but debugging needs it.
  cp "$KROOT/boot/System.map-$KREL" "$OUT/System.map"
  KVER_PKG="$(cut -d= -f2 "$OUT/cloud/.kernel-stamp")"
  if [[ ${COALESCE_SYSTEM_MAP:-1} == 0 ]]; then
    log "COALESCE_SYSTEM_MAP=0: keeping Debian's stub System.map"
  elif (mkdir -p "$OUT/debs" && cd "$OUT/debs" && apt-get download -q "$KPKG-dbg=$KVER_PKG" >&2); then
    dpkg-deb --fsys-tarfile "$OUT/debs/$KPKG-dbg_"*.deb |
      tar -xO "./usr/lib/debug/boot/System.map-$KREL" >"$OUT/System.map.tmp" &&
      mv "$OUT/System.map.tmp" "$OUT/System.map" || log "warning: no System.map in $KPKG-dbg"
  else
    log "warning: could not download $KPKG-dbg: System.map is Debian's stub"
  fi
  rm -rf "$OUT/debs"
  rm -f "$OUT/.initramfs-stamp"
fi
KSTAMP_WANT="$(cat "$OUT/cloud/.kernel-stamp")"

MODDIR="$KROOT/lib/modules/$KREL"
[[ -d $MODDIR/kernel ]] || die "$MODDIR/kernel missing: delete $OUT and re-run"
mapfile -t ORDER < <(module_load_order "$MODDIR" "${WANTED_MODULES[@]}")
mapfile -t BUTTON_ORDER < <(module_load_order "$MODDIR" "${BUTTON_MODULES[@]}")

# --- Initramfs: rebuilt when any input changed. ---
INITRD="$OUT/initramfs.cpio"
ISTAMP="$OUT/.initramfs-stamp"
INPUT_HASH="$( {
  sha256sum "$0" "$ROOT/scripts/lib/debian-kernel.sh" "$BUSYBOX" | awk '{print $1}'
  echo "$KSTAMP_WANT"
  printf '%s\n' "${ORDER[@]}" "${BUTTON_ORDER[@]}"
} | sha256sum | awk '{print $1}')"
if [[ -f $ISTAMP && "$(cat "$ISTAMP")" == "$INPUT_HASH" && -f $INITRD ]]; then
  log "up to date"
else
  log "building initramfs (${#ORDER[@]} modules)"
  STAGE="$(mktemp -d "$OUT/.stage.XXXXXX")"
  trap 'rm -rf "$STAGE"' EXIT
  mkdir -p "$STAGE"/{bin,sbin,dev,proc,sys,tmp,etc,root,lib/modules}
  cp "$BUSYBOX" "$STAGE/bin/busybox"
  ln -s busybox "$STAGE/bin/sh"
  stage_modules "$MODDIR" "$STAGE/lib/modules" "${ORDER[@]}"
  mkdir -p "$STAGE/lib/modules/button"
  stage_modules "$MODDIR" "$STAGE/lib/modules/button" "${BUTTON_ORDER[@]}"
  cat >"$STAGE/init" <<'INIT'
#!/bin/sh
# Coalesce test guest /init (generated by scripts/guest-assets.sh; contract in docs/BOOT.md).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
# The virtio modules load on request (coalesce.modules=1): guests without virtio devices skip the cost,
# which is large where the guest kernel's code is emulated (software-virtualized KVM).
case " $(cat /proc/cmdline) " in
  *" coalesce.modules=1 "*)
    for m in $(cat /lib/modules/load-order); do
      insmod "/lib/modules/$m" 2>/dev/null || echo "COALESCE-GUEST: insmod $m failed"
    done
    ;;
esac
echo "COALESCE-GUEST: cpus=$(nproc)"
grep '^processor' /proc/cpuinfo
grep '^MemTotal' /proc/meminfo
cmdline="$(cat /proc/cmdline)"
cmd=""
case "$cmdline" in
  *coalesce.cmd=*)
    rest="${cmdline#*coalesce.cmd=}"
    if [ "${rest#\"}" != "$rest" ]; then
      rest="${rest#\"}"
      cmd="${rest%%\"*}"
    else
      cmd="${rest%% *}"
    fi
    ;;
esac
if [ -n "$cmd" ]; then
  echo "COALESCE-CMD-BEGIN"
  sh -c "$cmd"
  echo "COALESCE-CMD-EXIT=$?"
else
  # The ACPI power button powers off, as acpid would: a watcher blocks on the button's input device.
  for m in $(cat /lib/modules/button/load-order); do insmod "/lib/modules/button/$m" 2>/dev/null; done
  for ev in /sys/class/input/event*; do
    if grep -q "Power Button" "$ev/device/name" 2>/dev/null; then
      ( head -c 1 "/dev/input/${ev##*/}" >/dev/null &&
        echo "COALESCE-GUEST: power button pressed, powering off" && sync && poweroff -f ) &
    fi
  done
  echo "COALESCE-GUEST: no coalesce.cmd, starting a shell on the console; exit to power off"
  setsid cttyhack sh
fi
sync
poweroff -f
INIT
  chmod 0755 "$STAGE/init"
  write_cpio "$STAGE" "$INITRD" "$EPOCH"
  echo "$INPUT_HASH" >"$ISTAMP"
fi

echo "kernel: $OUT/vmlinuz"
echo "initrd: $INITRD"
