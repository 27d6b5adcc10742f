#!/usr/bin/env bash
# Builds the guest kernel and initramfs used by the end-to-end tests, into guest-assets/ (gitignored).
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
# or, without coalesce.cmd, starts a shell on the console (ttyS0). Either way it ends with `poweroff -f`.
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

log() { echo "guest-assets: $*" >&2; }
die() { echo "guest-assets: error: $*" >&2; exit 1; }

for tool in apt-cache apt-get dpkg-deb cpio sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (run scripts/setup.sh)"
done
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || die "$BUSYBOX not found: install busybox-static (scripts/setup.sh)"
file_is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'INTERP'; }
file_is_static "$BUSYBOX" || die "$BUSYBOX is dynamically linked: install busybox-static, not busybox"

mkdir -p "$OUT"

# --- Resolve the kernel package (linux-image-cloud-amd64 depends on linux-image-<ver>-cloud-amd64). ---
resolve_kernel_pkg() {
  apt-cache depends "$META_PKG" 2>/dev/null |
    awk '/Depends: linux-image-[0-9].*-cloud-amd64/ {print $2; exit}'
}
KPKG="$(resolve_kernel_pkg || true)"
if [[ -z $KPKG ]]; then
  log "package lists do not know $META_PKG: running apt-get update"
  apt-get update -q >&2 || die "apt-get update failed (needs root and network)"
  KPKG="$(resolve_kernel_pkg || true)"
  [[ -n $KPKG ]] || die "cannot resolve $META_PKG to a kernel package"
fi
KVER_PKG="$(apt-cache show --no-all-versions "$KPKG" | awk '/^Version:/ {print $2; exit}')"
[[ -n $KVER_PKG ]] || die "no version for $KPKG"
KREL="${KPKG#linux-image-}"  # e.g. 6.1.0-56-cloud-amd64: the kernel release (uname -r)

# --- Kernel: download and extract unless the stamp says it is current. ---
KSTAMP="$OUT/.kernel-stamp"
KSTAMP_WANT="$KPKG=$KVER_PKG"
KROOT="$OUT/kernel-root"
if [[ ! -f $KSTAMP || "$(cat "$KSTAMP")" != "$KSTAMP_WANT" || ! -f $OUT/vmlinuz || ! -d $KROOT ]]; then
  log "fetching $KPKG $KVER_PKG"
  DEBDIR="$OUT/debs"
  rm -rf "$DEBDIR" "$KROOT"
  mkdir -p "$DEBDIR"
  # apt-get download writes into the current directory. As root it warns that it runs unsandboxed: harmless.
  (cd "$DEBDIR" && apt-get download -q "$KPKG=$KVER_PKG" >&2) || die "apt-get download $KPKG failed"
  DEB="$(ls "$DEBDIR/$KPKG"_*.deb | head -n1)"
  mkdir -p "$KROOT"
  dpkg-deb -x "$DEB" "$KROOT"
  cp "$KROOT/boot/vmlinuz-$KREL" "$OUT/vmlinuz"
  # The image package's System.map is a one-line stub; the real one is in the -dbg package (~280 MB to
  # download, once). Only that file is kept. Without it the stub stays: nothing but debugging needs it.
  cp "$KROOT/boot/System.map-$KREL" "$OUT/System.map"
  if [[ ${COALESCE_SYSTEM_MAP:-1} == 0 ]]; then
    log "COALESCE_SYSTEM_MAP=0: keeping Debian's stub System.map"
  elif (cd "$DEBDIR" && apt-get download -q "$KPKG-dbg=$KVER_PKG" >&2); then
    dpkg-deb --fsys-tarfile "$DEBDIR/$KPKG-dbg_"*.deb |
      tar -xO "./usr/lib/debug/boot/System.map-$KREL" >"$OUT/System.map.tmp" &&
      mv "$OUT/System.map.tmp" "$OUT/System.map" || log "warning: no System.map in $KPKG-dbg"
  else
    log "warning: could not download $KPKG-dbg: System.map is Debian's stub"
  fi
  rm -rf "$DEBDIR"
  echo "$KSTAMP_WANT" >"$KSTAMP"
  rm -f "$OUT/.initramfs-stamp"
fi

MODDIR="$KROOT/lib/modules/$KREL"
[[ -d $MODDIR/kernel ]] || die "$MODDIR/kernel missing: delete $OUT and re-run"
command -v objcopy >/dev/null || die "objcopy not found (binutils, from build-essential)"

# --- Module closure in load order (dependencies first). The package ships no modules.dep (depmod makes it
# at install time, and kmod may be absent here), so read each module's own "depends=" from .modinfo. ---
declare -A MODPATH=()
while IFS= read -r path; do
  base="${path##*/}"
  name="${base%%.ko*}"
  MODPATH[${name//-/_}]="${path#"$MODDIR"/}"
done < <(find "$MODDIR/kernel" -name '*.ko*' | LC_ALL=C sort)
module_depends() {
  local src="$MODDIR/$1" tmp
  tmp="$(mktemp)"
  case "$src" in
    *.ko.xz) xz -dc "$src" >"$tmp" ;;
    *.ko.zst) zstd -qdc "$src" >"$tmp" ;;
    *) cp "$src" "$tmp" ;;
  esac
  objcopy -O binary --only-section=.modinfo "$tmp" "$tmp.info"
  tr '\0' '\n' <"$tmp.info" | awk -F= '$1 == "depends" {print $2}' | tr ',' ' '
  rm -f "$tmp" "$tmp.info"
}
declare -A SEEN=()
ORDER=()
visit() {
  local name="${1//-/_}"
  [[ -n ${SEEN[$name]:-} ]] && return 0
  SEEN[$name]=1
  local rel="${MODPATH[$name]:-}"
  [[ -z $rel ]] && return 0  # built in, or not in this kernel
  local dep
  for dep in $(module_depends "$rel"); do visit "$dep"; done
  ORDER+=("$rel")
}
for m in "${WANTED_MODULES[@]}"; do visit "$m"; done

# --- Initramfs: rebuilt when any input changed. ---
INITRD="$OUT/initramfs.cpio"
ISTAMP="$OUT/.initramfs-stamp"
INPUT_HASH="$( {
  sha256sum "$0" "$BUSYBOX" | awk '{print $1}'
  echo "$KSTAMP_WANT"
  printf '%s\n' "${ORDER[@]}"
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
  : >"$STAGE/lib/modules/load-order"
  for rel in "${ORDER[@]}"; do
    src="$MODDIR/$rel"
    base="${rel##*/}"
    case "$base" in
      # busybox insmod takes plain ELF objects: decompress here, not in the guest.
      *.ko.xz) xz -dc "$src" >"$STAGE/lib/modules/${base%.xz}"; base="${base%.xz}" ;;
      *.ko.zst) zstd -qdc "$src" >"$STAGE/lib/modules/${base%.zst}"; base="${base%.zst}" ;;
      *.ko.gz) gzip -dc "$src" >"$STAGE/lib/modules/${base%.gz}"; base="${base%.gz}" ;;
      *) cp "$src" "$STAGE/lib/modules/$base" ;;
    esac
    echo "$base" >>"$STAGE/lib/modules/load-order"
  done
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
  echo "COALESCE-GUEST: no coalesce.cmd, starting a shell on the console; exit to power off"
  setsid cttyhack sh
fi
sync
poweroff -f
INIT
  chmod 0755 "$STAGE/init"
  find "$STAGE" -exec touch -h -d "@$EPOCH" {} +
  (cd "$STAGE" && find . -mindepth 1 -print | LC_ALL=C sort |
     cpio --quiet -o -H newc -R 0:0 --reproducible) >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  echo "$INPUT_HASH" >"$ISTAMP"
fi

echo "kernel: $OUT/vmlinuz"
echo "initrd: $INITRD"
