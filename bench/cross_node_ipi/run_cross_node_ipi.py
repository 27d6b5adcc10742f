#!/usr/bin/env python3
"""Cross-node IPI round trip: the ipi_bench guest with vCPU 1 on an edge agent (a second node, a separate
process reached over the data plane) against the same guest with both vCPUs on one node, in the same run.
Last line: one JSON object (name, value, unit, baseline, ratio).

Usage: run_cross_node_ipi.py COALESCE IPI_BENCH_ELF [--rounds N]"""
import argparse
import json
import re
import os
import subprocess
import sys

RESULT = re.compile(r"ipi_bench: rounds=(\d+) median=(\d+) mean=(\d+) min=(\d+) p90=(\d+) p99=(\d+) max=(\d+) "
                    r"tsc_khz=(\d+)")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
from edge_agent_process import EdgeAgent  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("kernel")
ap.add_argument("--rounds", type=int, default=200)
a = ap.parse_args()


def run(extra):
    cmd = [a.coalesce, "run", "--kernel", a.kernel, "--vcpus", "2", "--append", f"rounds={a.rounds} warmup=20"] + extra
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    m = RESULT.search(p.stdout)
    if not m:
        raise SystemExit(f"no result from {' '.join(cmd)}:\n{p.stdout}\n{p.stderr}")
    median, tsc_khz = int(m.group(2)), int(m.group(8))
    print(f"{'edge' if extra else 'local'}: median {median} cycles ({median / tsc_khz * 1000:.1f} us), "
          f"p99 {m.group(6)}", flush=True)
    return median, tsc_khz


agent = EdgeAgent(a.coalesce, capacity="vcpus=4,memory=4G")
listen = agent.listen
try:
    local, local_khz = run([])
    remote, remote_khz = run(["--edge", f"{listen}=1"])
finally:
    agent.stop()
print(json.dumps({"name": "cross_node_ipi_round_trip", "value": remote, "unit": "tsc_cycles", "baseline": local,
                  "ratio": round(remote / local, 3), "value_us": round(remote / remote_khz * 1000, 1),
                  "baseline_us": round(local / local_khz * 1000, 1), "rounds": a.rounds,
                  "baseline_kind": "both vCPUs on one node, same guest, same run"}))
