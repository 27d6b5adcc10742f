#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test. Ends with "N passed, N failed"; exits non-zero on
# any failure. Extra arguments go to `meson test` (e.g. a suite name).
#
# Tests that need KVM are in the meson suite 'kvm'. Where this host has a usable /dev/kvm everything runs here;
# where it has none, the other tests run here and the 'kvm' suite runs in a nested KVM VM under QEMU TCG
# (scripts/kvm-vm, policy in scripts/lib/kvm-policy.sh), and both results join one closing line.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/kvm-policy.sh
scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
scripts/build.sh || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
# The real System.map (a ~280 MB -dbg download) is only for benchmarks that name hot pages.
export COALESCE_SYSTEM_MAP="${COALESCE_SYSTEM_MAP:-0}"
scripts/guest-assets.sh || { echo "guest assets failed"; echo "0 passed, 1 failed"; exit 1; }

logs=build/meson-logs
rm -f "$logs"/host.json "$logs"/nested.json "$logs"/nested-coalesced.json "$logs"/nested-qemu.json "$logs"/testlog.json
rm -f "$logs"/nested-linux-*.json "$logs"/nested-linux-*.status
rm -f build-fuzz/meson-logs/fuzz.json

# The fuzz targets (tests/fuzz, docs/FUZZING.md): built with clang and sanitizers in build-fuzz/, each run for
# FUZZ_SECONDS (20 s here). Only when the whole suite runs, not for a selection of meson tests.
run_fuzz() {
  (($# == 0)) || return 0
  scripts/fuzz.sh && return 0
  if [[ ! -s build-fuzz/meson-logs/fuzz.json ]]; then  # no target ran: the build or set-up failed, say so
    mkdir -p build-fuzz/meson-logs
    echo '{"name": "fuzz build (scripts/fuzz.sh)", "result": "FAIL"}' >build-fuzz/meson-logs/fuzz.json
  fi
  return 1
}

# run_nested LOGBASE TCG_THREAD MESON_TEST_ARGS...: the selected KVM tests in one nested KVM VM. When the VM
# cannot run them at all, each counts as failed and the reason is printed: a KVM test never skips.
run_nested() {
  local base="$1" thread="$2"; shift 2
  local names
  names="$(meson test -C build --list --no-rebuild "$@" 2>/dev/null | grep ' / ')"
  [[ -n $names ]] || return 0
  KVM_VM_DMESG="$logs/$base-dmesg.txt" COALESCE_KVM_VM_TCG_THREAD="$thread" \
    with_kvm meson test -C build "${common[@]}" --no-rebuild --logbase "$base" "$@"
  local vm_status=$?
  # A failure under the nested VM may be the emulated host's: its kernel's own complaints (soft lockups, RCU
  # stalls, hung tasks, panics) are printed with it, the whole log stays in meson-logs.
  if ((vm_status != 0)) && [[ -s $logs/$base-dmesg.txt ]]; then
    grep -E -i "soft lockup|rcu.*stall|hung_task|blocked for more than|kernel panic|watchdog" "$logs/$base-dmesg.txt" |
      head -20 | sed "s/^/nested kernel: /"
  fi
  if ((vm_status == 124 || vm_status == 125)) || [[ ! -s $logs/$base.json ]]; then
    printf '%s\n' "$names" |
      python3 -c 'import json,sys; [print(json.dumps({"name": l.strip(), "result": "FAIL"})) for l in sys.stdin if l.strip()]' \
      >"$logs/$base.json"
    echo "no KVM could be had for these tests: the nested KVM VM did not run them (status $vm_status)"
  fi
  return $vm_status
}
status=0
common=(--print-errorlogs --num-processes 2)
# Each tier's results file; the closing line counts them all.
tiers=("$logs"/host.json build-fuzz/meson-logs/fuzz.json)
if [[ -z "$(nested_kvm_reason)" ]]; then
  meson test -C build "${common[@]}" --logbase host "$@" || status=1
  run_fuzz "$@" || status=1
else
  # Host part first (it is fast), then two nested KVM VMs side by side, one host core each, single-threaded
  # TCG: the single-process KVM tests in one, the multi-process coalesced VMs (suite 'coalesced') in the other.
  # Multi-threaded TCG loses the nested kernel's IPIs and, about once in 40 guest runs, triple-faulted a guest
  # or panicked the nested kernel. Then the tests whose expected values are hardware's (suite 'hw-reference':
  # QEMU's runs of the same guests, and kvm_emul) in a third VM, multi-threaded: under single-threaded TCG
  # QEMU's in-kernel LAPIC hung or delivered an interrupt twice, and a locked cmpxchg16b on an absent page
  # faulted as a read (docs/NESTED_KVM.md).
  # Listed into a variable first: `meson test --list | grep -q` under pipefail fails whenever grep's early exit
  # makes meson die of SIGPIPE, and that once skipped the whole host tier without a word (115 passed, 0 failed).
  host_tests="$(meson test -C build --list --no-rebuild --no-suite kvm "$@" 2>/dev/null)"
  if grep -q ' / ' <<<"$host_tests"; then
    meson test -C build "${common[@]}" --logbase host --no-suite kvm "$@" || status=1
  fi
  run_fuzz "$@" || status=1
  tiers+=("$logs"/nested.json "$logs"/nested-coalesced.json "$logs"/nested-qemu.json)
  # Debian's kernel over several nodes (suite kvm-host-only) needs a host with /dev/kvm: in the nested VM it is
  # too slow under nested paging and unsound under shadow paging (docs/DSM.md). Named here, not silently dropped.
  held_back="$(meson test -C build --list --no-rebuild --suite kvm-host-only "$@" 2>/dev/null | grep ' / ' |
               sed 's/.* \/ //' | tr '\n' ' ')"
  if [[ -n $held_back ]]; then
    echo "not run in the nested KVM VM (they need a host with /dev/kvm; docs/NESTED_KVM.md): $held_back"
  fi
  # The hw-reference VM runs when the kvm VM is done, beside the coalesced VM's longer run.
  # The nested VM's own kernel panicking under multi-threaded TCG ("corrupted stack end detected inside
  # scheduler", seen about once in ten CI runs), or stalling in its boot (no line after the MTRR messages,
  # seen once; scripts/kvm-vm's boot watchdog), is a fault of the emulator under the test machine, not a test
  # result: that case gets a fresh VM, once, and says so. Any other failure stands.
  run_hw_reference() {
    run_nested nested-qemu multi --suite hw-reference "$@"
    local qemu_status=$?
    if ((qemu_status == 125)) && grep -q -e "Kernel panic" -e "kvm-vm: boot stalled" "$logs/nested-qemu-dmesg.txt" 2>/dev/null; then
      echo "the nested KVM VM's kernel panicked or stalled in its boot under multi-threaded TCG (docs/NESTED_KVM.md):" \
           "the hw-reference suite runs again in a fresh VM"
      run_nested nested-qemu multi --suite hw-reference "$@"
      qemu_status=$?
    fi
    return "$qemu_status"
  }
  rm -f "$logs"/nested.status "$logs"/nested-coalesced.status "$logs"/nested-qemu.status
  {
    { run_nested nested single --suite kvm --no-suite coalesced --no-suite hw-reference "$@"; echo $? >"$logs/nested.status"; } 2>&1 |
      sed -u 's/^/[kvm] /'
    { run_hw_reference "$@"; echo $? >"$logs/nested-qemu.status"; } 2>&1 | sed -u 's/^/[hw-reference] /'
  } &
  # The coalesced VM's tests took 58 minutes on a slow day (2026-12-07): an hour and a half before it is killed.
  {
    { export COALESCE_KVM_VM_TIMEOUT="${COALESCE_KVM_VM_TIMEOUT:-5400}"
      run_nested nested-coalesced single --suite coalesced --no-suite linux "$@"; echo $? >"$logs/nested-coalesced.status"; } 2>&1 |
      sed -u 's/^/[coalesced] /'
  } &
  wait
  for f in "$logs"/nested.status "$logs"/nested-coalesced.status "$logs"/nested-qemu.status; do
    [[ "$(cat "$f" 2>/dev/null)" == 0 ]] || status=1
  done
fi
# The whole suite must leave every tier's results: a tier that left none failed to run, and says so.
python3 - "$#" "${tiers[@]}" <<'PY'
import json, os, sys
whole_suite = sys.argv[1] == "0"
passed = failed = 0
for path in sys.argv[2:]:
    if not os.path.exists(path):
        if whole_suite:
            print(f"no results in {path}: that tier did not run")
            failed += 1
        continue
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)["result"]
            if r in ("OK", "EXPECTEDFAIL"):
                passed += 1
            else:
                failed += 1  # a skip counts as a failure: nothing is allowed to skip
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
py=$?
if [[ $status -ne 0 || $py -ne 0 ]]; then exit 1; fi
exit 0
