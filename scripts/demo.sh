#!/usr/bin/env bash
# The demo: installs everything, builds Coalesce, fetches Debian's cloud kernel and builds the initramfs
# (cached), then boots that guest with 2 vCPUs. The guest's /init prints the CPUs and MemTotal it sees,
# runs the command below and powers off; `coalesce run` exits 0 on that power-off.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
scripts/guest-assets.sh
echo "demo: booting Debian's kernel with 2 vCPUs and 512M (on a host without hardware virtualization this"
echo "demo: takes minutes; see docs/BOOT.md)"
exec build/coalesce run \
  --kernel guest-assets/vmlinuz \
  --initrd guest-assets/initramfs.cpio \
  --vcpus 2 --memory 512M --stats \
  --append 'console=ttyS0 loglevel=4 coalesce.cmd="grep -E ^processor /proc/cpuinfo; nproc"' </dev/null
