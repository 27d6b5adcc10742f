#!/usr/bin/env bash
# Runs the benchmarks (all, or the named ones) where KVM is: directly with a usable /dev/kvm, else in the
# nested KVM VM (scripts/lib/kvm-policy.sh), so both sides of every ratio run on the same KVM in the same run.
# Prints each benchmark's closing JSON line at the end, and keeps them in build/meson-logs/bench-results.jsonl.
#
#   scripts/bench.sh                      every benchmark
#   scripts/bench.sh linux_boot_time ...  the named ones (`meson test -C build --benchmark --list`)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/kvm-policy.sh
scripts/setup.sh >/dev/null || { echo "setup failed"; exit 1; }
scripts/build.sh >/dev/null || { echo "build failed"; exit 1; }
scripts/guest-assets.sh >/dev/null || { echo "guest assets failed"; exit 1; }
logs=build/meson-logs
# In the nested KVM VM the TCG threading depends on the benchmark: multi-threaded for most, since QEMU's own
# guests, the baseline of several benchmarks, hang in their boot under single-threaded TCG there; but
# single-threaded for suite 'multiprocess' (a guest over edge agents, no QEMU baseline), whose cross-node
# interrupts multi-threaded TCG sometimes does not deliver (docs/NESTED_KVM.md). COALESCE_KVM_VM_TCG_THREAD runs
# everything one way. Both sides of each ratio share one VM either way.
rm -f "$logs"/bench-*.json
run_benchmarks() {  # THREADING LOGBASE MESON-TEST-ARGS...
  local threading=$1 logbase=$2
  shift 2
  COALESCE_KVM_VM_TCG_THREAD="${COALESCE_KVM_VM_TCG_THREAD_FORCED:-$threading}" \
    COALESCE_KVM_VM_TIMEOUT="${COALESCE_KVM_VM_TIMEOUT:-7200}" \
    with_kvm meson test -C build --benchmark --no-rebuild --num-processes 1 --verbose --logbase "$logbase" "$@"
}
COALESCE_KVM_VM_TCG_THREAD_FORCED="${COALESCE_KVM_VM_TCG_THREAD:-}"
mapfile -t multiprocess < <(meson test -C build --benchmark --no-rebuild --list --suite multiprocess 2>/dev/null |
                            sed -n 's|^.* / ||p')
status=0
if [[ $# -eq 0 ]]; then
  run_benchmarks multi bench-multi --no-suite multiprocess || status=1
  run_benchmarks single bench-single --suite multiprocess || status=1
else
  single=() others=()
  for name in "$@"; do
    if printf '%s\n' "${multiprocess[@]}" | grep -qxF -- "$name"; then single+=("$name"); else others+=("$name"); fi
  done
  if [[ ${#others[@]} -gt 0 ]]; then run_benchmarks multi bench-multi "${others[@]}" || status=1; fi
  if [[ ${#single[@]} -gt 0 ]]; then run_benchmarks single bench-single "${single[@]}" || status=1; fi
fi
python3 - "$logs/bench-results.jsonl" "$logs/bench-multi.json" "$logs/bench-single.json" <<'PY'
import json, os, sys
dst, sources = sys.argv[1], sys.argv[2:]
with open(dst, 'w') as out:
    for src in sources:
        if not os.path.exists(src):
            continue
        with open(src) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                last = [l for l in (r.get('stdout') or '').splitlines() if l.startswith('{')]
                figure = last[-1] if last else json.dumps({'name': r['name'], 'error': r['result']})
                print(figure)
                out.write(figure + '\n')
PY
exit $status
