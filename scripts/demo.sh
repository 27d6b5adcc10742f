#!/usr/bin/env bash
# The demo: installs everything, builds Coalesce, fetches Debian's cloud kernel and builds the initramfs
# (cached), then boots that guest with 2 vCPUs. The guest's /init prints the CPUs and MemTotal it sees,
# runs the command below and powers off; `coalesce run` exits 0 on that power-off.
#
# Where this host has no /dev/kvm, the guest runs under Coalesce inside a nested KVM VM under QEMU TCG
# (scripts/kvm-vm; scripts/lib/kvm-policy.sh), and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/kvm-policy.sh
scripts/setup.sh
scripts/build.sh
scripts/guest-assets.sh
timeout_s="${COALESCE_DEMO_TIMEOUT:-600}"
if [[ -z "$(nested_kvm_reason)" ]]; then
  where="this host's KVM"
else
  where="nested KVM (Coalesce in a KVM VM under QEMU TCG, because this host has no /dev/kvm)"
fi
echo "demo: booting Debian's kernel with 2 vCPUs and 512M on $where"
set +e
COALESCE_KVM_VM_TIMEOUT=$((timeout_s + 120)) with_kvm timeout -s INT "$timeout_s" build/coalesce run \
  --kernel guest-assets/vmlinuz \
  --initrd guest-assets/initramfs.cpio \
  --vcpus 2 --memory 512M --stats \
  --append 'console=ttyS0 loglevel=4 coalesce.cmd="grep -E ^processor /proc/cpuinfo; nproc"' </dev/null
status=$?
echo "demo: coalesce exited with status $status on $where"
exit $status
