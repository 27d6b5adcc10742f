#!/usr/bin/env python3
"""Exit cost: TSC cycles per PIO exit through the whole Coalesce monitor (KVM_RUN, exit decode, vCPU loop,
PIO bus, UART) against a bare KVM_RUN loop running the same port-write loop, in the same run.

Usage: run_exit_cost.py COALESCE EXIT_LOOP_ELF RAW_EXIT_LOOP [--exits N] [--reps R]
Last line: one JSON object (name, value, unit, baseline, ratio)."""
import argparse
import json
import re
import statistics
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("guest")
ap.add_argument("raw")
ap.add_argument("--exits", type=int, default=20000)
ap.add_argument("--reps", type=int, default=5)
a = ap.parse_args()

pat = re.compile(r"cycles_per_exit=(\d+)")


def measure(cmd):
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    m = pat.search(out.stdout)
    if not m:
        raise SystemExit(f"no cycles_per_exit in output of {cmd}:\n{out.stdout}\n{out.stderr}")
    return int(m.group(1))


monitor, raw = [], []
for _ in range(a.reps):  # interleaved, so drift in host load hits both alike
    raw.append(measure([a.raw, str(a.exits)]))
    monitor.append(measure([a.coalesce, "run", "--kernel", a.guest, "--append", f"n={a.exits}"]))
    print(f"raw {raw[-1]} cycles/exit, coalesce {monitor[-1]} cycles/exit")
value, baseline = statistics.median(monitor), statistics.median(raw)
print(json.dumps({"name": "pio_exit_round_trip", "value": value, "unit": "tsc_cycles", "baseline": baseline,
                  "ratio": round(value / baseline, 3), "exits_per_run": a.exits, "reps": a.reps,
                  "baseline_kind": "bare KVM_RUN loop, same port-write loop, same host"}))
