#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test. Ends with "N passed, N failed"; exits non-zero on
# any failure. Extra arguments go to `meson test` (e.g. a suite name).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
scripts/build.sh || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
# The real System.map (a ~280 MB -dbg download) is only for benchmarks that name hot pages.
export COALESCE_SYSTEM_MAP="${COALESCE_SYSTEM_MAP:-0}"
if [[ -x scripts/guest-assets.sh ]]; then
  scripts/guest-assets.sh || { echo "guest assets failed"; echo "0 passed, 1 failed"; exit 1; }
fi
# In CI a KVM test must fail, not skip, when /dev/kvm is missing: the tests read this.
export COALESCE_REQUIRE_KVM=1
# The Debian-kernel boots (suite 'linux') only on request: on PVM hosts one boot outlasts the CI budget.
default_suites=()
if [[ $# -eq 0 && "${COALESCE_LINUX_TESTS:-0}" != 1 ]]; then default_suites=(--no-suite linux); fi
meson test -C build --print-errorlogs --num-processes 2 "${default_suites[@]}" "$@"
status=$?
python3 - build/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = 0
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            failed += 1  # nothing is allowed to skip: a skip means a missing prerequisite
        else:
            failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
py=$?
if [[ $status -ne 0 || $py -ne 0 ]]; then exit 1; fi
exit 0
