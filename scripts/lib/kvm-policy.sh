# The one place that decides where KVM work runs (sourced by scripts/test.sh, scripts/demo.sh and
# scripts/bench.sh). Where this host's /dev/kvm is usable, directly; where it is not, inside a nested KVM VM
# under QEMU TCG (scripts/kvm-vm), said once. Tests themselves never skip for want of KVM
# (tests/kvm_required.h and .py): they fail with the reason.

# kvm_problem: prints nothing when /dev/kvm is usable here, else why not.
kvm_problem() {
  if [[ ! -e /dev/kvm ]]; then
    echo "no /dev/kvm here"
  elif [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "/dev/kvm is not readable and writable by $(id -un)"
  elif [[ -d /sys/module/kvm_pvm && ! -d /sys/module/kvm_amd && ! -d /sys/module/kvm_intel ]]; then
    # Measured 2026-12-06 on a CI-class host: small test guests run under PVM, but Debian's kernel loops on
    # internal errors (SMAP's clac) and never reaches user space.
    echo "this host's /dev/kvm is PVM (kvm_pvm, without hardware virtualization), which does not run a stock Linux guest"
  fi
}

# nested_kvm_reason: prints why KVM work must go through the nested VM here (no usable /dev/kvm, or
# COALESCE_FORCE_NESTED_KVM=1 to test that path on a KVM host); nothing when it runs directly.
nested_kvm_reason() {
  if [[ ${COALESCE_FORCE_NESTED_KVM:-0} == 1 ]]; then
    echo "COALESCE_FORCE_NESTED_KVM=1"
  else
    kvm_problem
  fi
}

# with_kvm COMMAND [ARG...]: runs COMMAND where KVM is, and returns its status. COALESCE_KVM_VM_TIMEOUT bounds
# a nested run (seconds; default 3600).
KVM_POLICY_SAID=""
with_kvm() {
  local problem
  problem="$(nested_kvm_reason)"
  if [[ -z $problem ]]; then
    "$@"
    return
  fi
  if [[ -z $KVM_POLICY_SAID ]]; then
    echo "$problem: running the KVM work in a nested KVM VM under QEMU TCG (scripts/kvm-vm)"
    KVM_POLICY_SAID=1
  fi
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  "$root/scripts/kvm-vm" --timeout "${COALESCE_KVM_VM_TIMEOUT:-3600}" ${KVM_VM_DMESG:+--dmesg "$KVM_VM_DMESG"} -- "$@"
}
