#!/usr/bin/env python3
"""Pausing and resuming a running guest: how long the VMM takes to hold every vCPU and to let them go again.

The vcpu_move test guest (tests/guests/vcpu_move.c: every AP computing, taking a spinlock, answering pings and
ticking its LAPIC timer) runs on 3 vCPUs, and each round pauses it, waits 100 ms, and resumes it. Timed from the
request sent on the VMM's own socket to its answer, the same way for each:

- coalesce, one node: `suspend` / `resume` on the VM's control socket (docs/COALESCENCE.md "Pausing the guest");
- coalesce, three nodes: the same guest with vCPU 1 on edge agent A and vCPU 2 on edge agent B (loopback): the
  home holds its vCPU and waits for both edges' answers;
- baseline: QEMU/KVM (`-smp 3`), QMP `stop` / `cont` on the same guest, same run.

Last line: one JSON object (name, value = coalesce one-node suspend median in ms, unit, baseline = QEMU's `stop`
median, ratio, and the resume and three-node figures).

Usage: run_vm_pause.py COALESCE GUEST_DIR [--rounds N] [--no-qemu] [--no-edges]"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
from edge_agent_process import EdgeAgent  # noqa: E402
from control_client import control_request  # noqa: E402
from qmp_client import Qmp  # noqa: E402
from test_checks import wait_for  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("guests")
ap.add_argument("--rounds", type=int, default=10)
ap.add_argument("--no-qemu", action="store_true")
ap.add_argument("--no-edges", action="store_true")
a = ap.parse_args()
NESTED = os.environ.get("COALESCE_NESTED_KVM") == "1"
guest = os.path.abspath(os.path.join(a.guests, "vcpu_move.elf"))
work = tempfile.mkdtemp(prefix="coalesce-bench-pause-")
os.environ["COALESCE_RUN_DIR"] = work
# Long enough for every round; the guest is killed at the end, its verdict is not the point here.
APPEND = f"seconds={3000 if NESTED else 600} ping_timeout_s=600"


def rounds_of(pause, resume, label):
    suspend_ms, resume_ms = [], []
    for i in range(a.rounds):
        ms, reply = pause()
        suspend_ms.append(ms)
        time.sleep(0.1)
        ms2, reply2 = resume()
        resume_ms.append(ms2)
        print(f"{label}, round {i + 1}: pause {ms:.2f} ms, resume {ms2:.2f} ms", flush=True)
        time.sleep(0.2)
    return suspend_ms, resume_ms


def coalesce(edges):
    name = f"pause{len(edges)}"
    cmd = [a.coalesce, "run", "--name", name, "--kernel", guest, "--vcpus", "3", "--memory", "64M",
           "--append", APPEND]
    for addr, vcpu in edges:
        cmd += ["--edge", f"{addr}={vcpu}"]
    out_path = os.path.join(work, f"{name}.out")
    with open(out_path, "w") as out:
        vm = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        if not wait_for(out_path, r"vcpu_move: running", 1200 if NESTED else 120, vm):
            raise SystemExit(f"the guest did not start:\n{open(out_path).read()[-2000:]}")
        sock = os.path.join(work, f"{name}.sock")

        def call(command):
            ms, reply = control_request(sock, command)
            if reply.startswith("error"):
                raise SystemExit(f"{command}: {reply}")
            return ms, reply
        return rounds_of(lambda: call("suspend"), lambda: call("resume"),
                         f"coalesce, {1 + len(edges)} node(s)")
    finally:
        vm.kill()
        vm.wait()


def qemu():
    binary = shutil.which("qemu-system-x86_64")
    if not binary:
        return None, "qemu-system-x86_64 not installed"
    qmp_path = os.path.join(work, "qmp.sock")
    out_path = os.path.join(work, "qemu.out")
    with open(out_path, "w") as out:
        vm = subprocess.Popen([binary, "-accel", "kvm", "-m", "64", "-smp", "3", "-display", "none", "-serial",
                               "stdio", "-monitor", "none", "-no-reboot", "-device",
                               "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", guest, "-append", APPEND,
                               "-qmp", f"unix:{qmp_path},server=on,wait=off"],
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        if not wait_for(out_path, r"vcpu_move: running", 600 if NESTED else 60, vm):
            return None, f"QEMU's guest did not start: {open(out_path).read()[-500:]}"
        qmp = Qmp(qmp_path)

        def timed(command):
            t0 = time.perf_counter()
            reply = qmp.call(command)
            return (time.perf_counter() - t0) * 1000, reply
        return rounds_of(lambda: timed("stop"), lambda: timed("cont"), "qemu"), None
    finally:
        vm.kill()
        vm.wait()


def med(x):
    return round(statistics.median(x), 3) if x else None


one_suspend, one_resume = coalesce([])
edges_suspend, edges_resume, edges_why = [], [], "--no-edges" if a.no_edges else None
if not a.no_edges:
    with EdgeAgent(a.coalesce) as agent_a, EdgeAgent(a.coalesce) as agent_b:
        edges_suspend, edges_resume = coalesce([(agent_a.listen, 1), (agent_b.listen, 2)])
q, why = (None, "--no-qemu") if a.no_qemu else qemu()
q_stop, q_cont = q if q else ([], [])
value, baseline = med(one_suspend), med(q_stop)
print(json.dumps({
    "name": "vm_pause",
    "value": value,
    "unit": "ms",
    "baseline": baseline,
    "ratio": round(value / baseline, 2) if value and baseline else None,
    "baseline_kind": "qemu-system-x86_64 -accel kvm -smp 3, QMP stop, same guest, same run" if q else f"none: {why}",
    "resume_ms": med(one_resume),
    "baseline_resume_ms": med(q_cont),
    "resume_ratio": round(med(one_resume) / med(q_cont), 2) if q_cont and one_resume else None,
    "three_nodes_suspend_ms": med(edges_suspend),
    "three_nodes_resume_ms": med(edges_resume),
    "three_nodes_skipped": edges_why,
    "rounds": a.rounds,
    "nested_kvm": NESTED,
}))
