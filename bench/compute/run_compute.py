#!/usr/bin/env python3
"""Compute-bound throughput with little sharing: 2 vCPUs, one at home and one on an edge agent, against 2 vCPUs
at home, same guest, same run. Last line: one JSON object (name, value, unit, baseline, ratio).

Usage: run_compute.py COALESCE COMPUTE_ELF [--work N] [--reps R]"""
import argparse
import json
import re
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
from edge_agent_process import EdgeAgent  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("kernel")
ap.add_argument("--work", type=int, default=40)
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()
PAT = re.compile(r"throughput_rounds_per_s=(\d+)")


def run(extra):
    cmd = [a.coalesce, "run", "--kernel", a.kernel, "--vcpus", "2", "--append", f"work={a.work}"] + extra
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200)
    m = PAT.search(p.stdout)
    if not m or p.returncode != 1:
        raise SystemExit(f"compute guest failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return int(m.group(1))


agent = EdgeAgent(a.coalesce, capacity="vcpus=4,memory=4G")
listen = agent.listen
try:
    home, split = [], []
    for _ in range(a.reps):  # interleaved so host-load drift hits both
        home.append(run([]))
        split.append(run(["--edge", f"{listen}=1"]))
        print(f"2 at home: {home[-1]} rounds/s; 1 home + 1 edge: {split[-1]} rounds/s", flush=True)
finally:
    agent.stop()
value, baseline = statistics.median(split), statistics.median(home)
print(json.dumps({"name": "compute_throughput_split", "value": value, "unit": "rounds_per_s",
                  "baseline": baseline, "ratio": round(value / baseline, 3), "work": a.work, "reps": a.reps,
                  "baseline_kind": "2 vCPUs at home, same guest, same run"}))
