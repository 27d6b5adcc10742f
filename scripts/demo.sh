#!/usr/bin/env bash
# The demo: installs everything, builds Coalesce, fetches Debian's cloud kernel and builds the initramfs
# (cached), then boots that guest with 2 vCPUs. The guest's /init prints the CPUs and MemTotal it sees,
# runs the command below and powers off; `coalesce run` exits 0 on that power-off.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
scripts/guest-assets.sh
# With hardware virtualization the boot takes seconds. On a software-virtualized KVM (PVM) guest-kernel code
# runs in KVM's instruction emulator and the boot takes tens of minutes (docs/BOOT.md): the demo gives up
# after COALESCE_DEMO_TIMEOUT seconds (default 3600) and says so; `kill -USR2 <pid>` shows progress.
timeout_s="${COALESCE_DEMO_TIMEOUT:-3600}"
if grep -qwE 'vmx|svm' /proc/cpuinfo; then kvm_kind="hardware virtualization"; else kvm_kind="software-virtualized KVM (PVM): expect tens of minutes, see docs/BOOT.md"; fi
echo "demo: booting Debian's kernel with 2 vCPUs and 512M on $kvm_kind"
set +e
timeout -s INT "$timeout_s" build/coalesce run \
  --kernel guest-assets/vmlinuz \
  --initrd guest-assets/initramfs.cpio \
  --vcpus 2 --memory 512M --stats \
  --append 'console=ttyS0 loglevel=4 coalesce.cmd="grep -E ^processor /proc/cpuinfo; nproc"' </dev/null
status=$?
if [[ $status -eq 8 ]] && ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
  echo "demo: the guest did not power off within ${timeout_s}s on this software-virtualized KVM (docs/BOOT.md)"
fi
exit $status
