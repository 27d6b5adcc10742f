#!/usr/bin/env python3
"""vCPU migration pause: the vcpu_move guest (shared=0: its APs touch no shared page in their loop) on two nodes,
vCPU 1 on an edge agent; `coalesce ctl move` sends vCPU 1 home and back --moves times while it runs. The value
is the median pause the home measured (the vCPU parked on one node to running on the other: registers, APIC
and run state; its pages follow on demand), the baseline the link's round trip measured over the data plane
in the same run (a move needs about two: eviction and state, or state and confirmation). The guest's own
view is reported beside it: the largest gap between two TSC reads on the moving vCPU over the whole run.
Last line: one JSON object (name, value, unit, baseline, ratio).

Usage: run_vcpu_move.py COALESCE VCPU_MOVE_ELF [--moves N]"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
from edge_agent_process import EdgeAgent  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("kernel")
ap.add_argument("--moves", type=int, default=20)
a = ap.parse_args()
nested = os.environ.get("COALESCE_NESTED_KVM") == "1"
seconds = 60 + a.moves * (6 if nested else 1)

run_dir = tempfile.mkdtemp(prefix="coalesce-bench-move-")
os.environ["COALESCE_RUN_DIR"] = run_dir
out_path = os.path.join(run_dir, "vm.out")


def ctl(*args):
    p = subprocess.run([a.coalesce, "ctl", "--vm", "benchmove"] + list(args), capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"ctl {' '.join(args)}: exit {p.returncode}: {p.stderr}")
    return p.stdout


agent = EdgeAgent(a.coalesce, capacity="vcpus=4,memory=4G")
try:
    cmd = [a.coalesce, "run", "--name", "benchmove", "--kernel", a.kernel, "--vcpus", "2", "--memory", "64M",
           "--edge", f"{agent.listen}=1", "--append", f"seconds={seconds} shared=0"]
    with open(out_path, "w") as out:
        vm = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while "vcpu_move: running" not in open(out_path).read():
        if vm.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the guest did not start:\n{open(out_path).read()}")
        time.sleep(0.2)
    rtts = [float(m) for m in re.findall(r"round trip ([\d.]+) ms now", ctl("status"))]
    pauses = []
    for i in range(a.moves):
        for node, want in (("home", 0), ("1", 1)):
            reply = ctl("move", "1", node)
            m = re.search(rf"to node {want}; paused ([\d.]+) ms", reply)
            if not m:
                raise SystemExit(f"unexpected reply: {reply}")
            pauses.append(float(m.group(1)))
        print(f"move {i + 1}/{a.moves}: {pauses[-2]:.2f} ms home, {pauses[-1]:.2f} ms out", flush=True)
    rtts += [float(m) for m in re.findall(r"round trip ([\d.]+) ms now", ctl("status"))]
    if "late phase" in open(out_path).read():
        print("warning: the moves ran into the guest's late phase", flush=True)
    rc = vm.wait(seconds * 4 + 600)
finally:
    agent.stop()
output = open(out_path).read()
if rc != 1 or "vcpu_move: PASS" not in output:
    raise SystemExit(f"the guest failed (exit {rc}):\n{output[-3000:]}")
gap = re.search(r"CPU 1: .* largest TSC gap (\d+) us", output)
median = statistics.median(pauses)
rtt = statistics.median(rtts)
print(f"pauses: median {median:.2f} ms, min {min(pauses):.2f}, max {max(pauses):.2f}; link round trip {rtt:.3f} ms; "
      f"guest's largest TSC gap on vCPU 1: {int(gap.group(1)) / 1000:.2f} ms", flush=True)
print(json.dumps({"name": "vcpu_move_pause", "value": round(median, 3), "unit": "ms", "baseline": round(rtt, 3),
                  "ratio": round(median / rtt, 2) if rtt > 0 else None, "moves": len(pauses),
                  "min_ms": round(min(pauses), 3), "max_ms": round(max(pauses), 3),
                  "guest_largest_tsc_gap_ms": round(int(gap.group(1)) / 1000, 3),
                  "baseline_kind": "data-plane round trip to the edge (median Echo), same run"}))
