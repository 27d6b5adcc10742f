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
# In the nested KVM VM, multi-threaded TCG: QEMU's own guests, the baseline of several benchmarks, hang in their
# boot under single-threaded TCG there (docs/NESTED_KVM.md); both sides of each ratio share the VM either way.
export COALESCE_KVM_VM_TCG_THREAD="${COALESCE_KVM_VM_TCG_THREAD:-multi}"
rm -f "$logs/bench.json"
COALESCE_KVM_VM_TIMEOUT="${COALESCE_KVM_VM_TIMEOUT:-7200}" \
  with_kvm meson test -C build --benchmark --no-rebuild --num-processes 1 --verbose --logbase bench "$@"
status=$?
python3 - "$logs/bench.json" "$logs/bench-results.jsonl" <<'PY'
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
if not os.path.exists(src):
    sys.exit(0)
with open(src) as f, open(dst, 'w') as out:
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
