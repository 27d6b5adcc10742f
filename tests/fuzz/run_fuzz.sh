#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time: run_fuzz.sh TARGET SEED_DIR WORK_DIR.
# FUZZ_SECONDS (default 20) bounds the run; FUZZ_RUNS, if set, also ends it after that many inputs (long runs).
# New inputs go to WORK_DIR (never into the repository's seeds), a crashing input to WORK_DIR/crash-*, named in
# the output. Prints the executions done and exits non-zero on any crash, leak, timeout or sanitizer report.
set -uo pipefail
target="$1" seeds="$2" work="$3"
seconds="${FUZZ_SECONDS:-20}"
mkdir -p "$work"
log="$work/last-run.log"
runs=()
[[ -n ${FUZZ_RUNS:-} ]] && runs=(-runs="$FUZZ_RUNS")
"$target" "${runs[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/" "$work" "$seeds" >"$log" 2>&1
status=$?
execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
echo "$(basename "$target"): ${execs:-?} executions in $((SECONDS)) s (limit ${seconds} s), exit status $status"
if ((status != 0)); then
  tail -40 "$log"
  ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null
fi
# meson reads 77 as "skipped": a fuzz run that fails must count as failed.
((status == 0)) || exit 1
exit 0
