#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, docs/FUZZING.md) with clang, AddressSanitizer and UBSan in
# build-fuzz/, and runs each for FUZZ_SECONDS (default 20). Extra arguments go to `meson test` (e.g. a target's
# test name, fuzz_dsm_frames). Exits non-zero on any crash; crash inputs land in build-fuzz/tests/fuzz/found/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang++ >/dev/null || { echo "fuzz: clang++ is missing (scripts/setup.sh installs clang)"; exit 1; }
if [[ ! -f build-fuzz/build.ninja ]]; then
  CC=clang CXX=clang++ meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized >/dev/null
fi
targets="$(sed -n "s/^  '\([a-z_]*\)' : \[.*/fuzz_\1/p" tests/fuzz/meson.build | sed 's|^|tests/fuzz/|')"
# shellcheck disable=SC2086
ninja -C build-fuzz $targets
export FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
# UBSan findings are errors, not warnings, and leaks fail a run.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" ASAN_OPTIONS="detect_leaks=1"
meson test -C build-fuzz --no-rebuild --suite fuzz --num-processes "${FUZZ_JOBS:-2}" --print-errorlogs \
  --logbase fuzz "$@"
