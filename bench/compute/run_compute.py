#!/usr/bin/env python3
"""Compute-bound throughput with little sharing: 2 vCPUs, one at home and one on an edge agent, against 2 vCPUs
at home, same guest, same run. Last line: one JSON object (name, value, unit, baseline, ratio).

Usage: run_compute.py COALESCE COMPUTE_ELF [--work N] [--reps R]"""
import argparse
import json
import re
import signal
import socket
import statistics
import subprocess
import time

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("kernel")
ap.add_argument("--work", type=int, default=40)
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()
PAT = re.compile(r"throughput_rounds_per_s=(\d+)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(extra):
    cmd = [a.coalesce, "run", "--kernel", a.kernel, "--vcpus", "2", "--append", f"work={a.work}"] + extra
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200)
    m = PAT.search(p.stdout)
    if not m or p.returncode != 1:
        raise SystemExit(f"compute guest failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return int(m.group(1))


listen = f"127.0.0.1:{free_port()}"
agent = subprocess.Popen([a.coalesce, "edge", "--listen", listen, "--capacity", "vcpus=4,memory=4G"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", int(listen.split(":")[1])), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    home, split = [], []
    for _ in range(a.reps):  # interleaved so host-load drift hits both
        home.append(run([]))
        split.append(run(["--edge", f"{listen}=1"]))
        print(f"2 at home: {home[-1]} rounds/s; 1 home + 1 edge: {split[-1]} rounds/s", flush=True)
finally:
    agent.send_signal(signal.SIGTERM)
    agent.wait(10)
value, baseline = statistics.median(split), statistics.median(home)
print(json.dumps({"name": "compute_throughput_split", "value": value, "unit": "rounds_per_s",
                  "baseline": baseline, "ratio": round(value / baseline, 3), "work": a.work, "reps": a.reps,
                  "baseline_kind": "2 vCPUs at home, same guest, same run"}))
