#!/usr/bin/python3
"""The benchmark harness: a matrix of placements x link classes x workloads, each run on real nodes (the home
`coalesce run` process and `coalesce edge` agents whose runtimes are separate processes, over the sealed data
plane with the link emulated in the transport, both directions), compared against the same work on one node in
the same run. Writes results.csv, results.json, plots, a scaling projection and report.md (docs/BENCHMARKS.md).

  bench/harness/run [--quick] [--out DIR] [--nodes 1,2,3] [--links loopback,wifi6e] [--workloads compute,...]

Placements: 1 to N nodes with --vcpus-per-node vCPUs each, and for the memory workloads memory-only (every vCPU at
home, a quarter of the guest's RAM at home, the rest lent by a memory edge that runs no vCPU).

Run it through bench/harness/run, which finds KVM (directly, or the nested KVM VM where /dev/kvm is missing)."""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
# matplotlib wants a writable config directory; $HOME may not be one (the nested KVM VM's is read-only).
if not os.access(os.path.expanduser("~/.config"), os.W_OK):
    os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="harness-mpl-"))
from edge_agent_process import EdgeAgent  # noqa: E402
import model  # noqa: E402
from netns_nodes import NetnsNodes  # noqa: E402
import report  # noqa: E402
from workloads import WORKLOADS, guest_paths  # noqa: E402

# Quick: two emulated links, so the model has a calibration link and an out-of-sample one.
QUICK = {"nodes": [1, 2], "links": ["loopback", "latency=50us", "latency=200us,jitter=20us"],
         "workloads": ["compute", "sharing", "ipi", "memory"], "reps": 1}
# The memory-only placement: home keeps this share of the guest's RAM (--home-memory), a memory edge lends the rest.
HOME_MEMORY_SHARE = 4
# The `nodes` value of a memory-only point in the plan: home and one memory edge (rows record nodes = 2).
MEMORY_ONLY = "memory-only"
FULL = {"nodes": [1, 2, 3], "links": ["loopback", "pcie", "5g-urllc", "wifi6e", "5g", "wifi-p90"],
        "workloads": list(WORKLOADS), "reps": 3}
STATS_LINE = re.compile(r"pages sent (\d+) received (\d+) \| invalidations sent (\d+) received (\d+)")
# Home's measured round trip to each edge over the data plane (docs/NUMA.md), printed before the guest runs.
RTT_LINE = re.compile(r"edge \S+(?: \((?:vCPUs|memory) [^)]*\))?: round trip ([\d.]+) ms")
MSG_LINE = re.compile(r"messages sent (\d+) received (\d+) \| bytes sent (\d+) received (\d+)")
FAULT_LINE = re.compile(r"faults (\w+)\s+(\d+)\s+latency n=\d+ p50=([\d.]+)us p90=([\d.]+)us p99=([\d.]+)us "
                        r"max=([\d.]+)us")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the CI matrix (< 5 min on real KVM): "
                    + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench-harness"), help="output directory")
    ap.add_argument("--nodes", help="node counts, e.g. 1,2,3 (1 = home only)")
    ap.add_argument("--vcpus-per-node", type=int, default=1)
    ap.add_argument("--links", help="link classes (a,b,c) or specs with settings separated by ';' "
                    "(wifi6e;latency=5ms,jitter=1ms): dsm/link_spec.h")
    ap.add_argument("--workloads", help="comma-separated: " + ", ".join(WORKLOADS))
    ap.add_argument("--reps", type=int, help="repetitions of each point (medians are reported)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one guest run may take")
    ap.add_argument("--netns", action="store_true", help="each edge agent in its own network namespace behind a "
                    "veth pair, mutual TLS on the control plane (root; default: agents on loopback)")
    a = ap.parse_args()
    base = QUICK if a.quick else FULL
    a.nodes = [int(n) for n in a.nodes.split(",")] if a.nodes else base["nodes"]
    a.links = (a.links.split(";") if ";" in (a.links or "") else a.links.split(",")) if a.links else base["links"]
    a.workloads = a.workloads.split(",") if a.workloads else base["workloads"]
    a.reps = a.reps or base["reps"]
    for w in a.workloads:
        if w not in WORKLOADS:
            ap.error(f"--workloads: '{w}' is not one of {', '.join(WORKLOADS)}")
    if any(n < 1 or n > 8 for n in a.nodes) or 1 not in a.nodes:
        ap.error("--nodes: counts 1..8, and 1 (the one-node baseline) among them")
    if a.vcpus_per_node < 1:
        ap.error("--vcpus-per-node: at least 1")
    return a


def host_description():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    nested = os.environ.get("COALESCE_NESTED_KVM") == "1"
    return {"hostname": platform.node(), "kernel": platform.release(), "cpu_model": cpu, "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "kvm": "nested KVM VM under QEMU TCG (scripts/kvm-vm)" if nested else "/dev/kvm on this host",
            "nodes_share_host": True,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


class Progress:
    """One line, rewritten: done/total, a bar, the point running, elapsed and the estimate of what is left."""

    def __init__(self, total):
        self.total, self.done, self.t0 = total, 0, time.time()

    def show(self, what):
        el = time.time() - self.t0
        left = el / self.done * (self.total - self.done) if self.done else 0
        bar = "#" * (30 * self.done // self.total) + "." * (30 - 30 * self.done // self.total)
        line = f"[{bar}] {self.done}/{self.total} {what}  {el:.0f}s elapsed, ~{left:.0f}s left"
        # A terminal gets one rewritten line; a log gets one line per step.
        print(("\r" + line.ljust(120)) if sys.stdout.isatty() else line, end="" if sys.stdout.isatty() else "\n",
              flush=True)

    def step(self):
        self.done += 1


def dsm_stats(stderr):
    """The home node's DSM counters (COALESCE_DSM_STATS=1): traffic and the fault latency distribution; and
    the slowest link's round trip home measured at start."""
    s = {}
    m = STATS_LINE.search(stderr)
    if m:
        s.update(pages_sent=int(m.group(1)), pages_received=int(m.group(2)), invalidations_sent=int(m.group(3)),
                 invalidations_received=int(m.group(4)))
    m = MSG_LINE.search(stderr)
    if m:
        s.update(messages_sent=int(m.group(1)), messages_received=int(m.group(2)), bytes_sent=int(m.group(3)),
                 bytes_received=int(m.group(4)))
    rtts = [float(m.group(1)) for m in RTT_LINE.finditer(stderr)]
    if rtts:
        s["link_rtt_ms"] = max(rtts)
    for m in FAULT_LINE.finditer(stderr):
        kind = m.group(1)
        s[f"faults_{kind}"] = int(m.group(2))
        for i, q in enumerate(("p50", "p90", "p99", "max"), start=3):
            s[f"fault_{kind}_{q}_us"] = float(m.group(i))
    return s


def placement(nodes, k, agents):
    """--edge flags: vCPUs 0..k-1 at home, node i gets i*k..(i+1)*k-1."""
    flags = []
    for i in range(1, nodes):
        ids = ",".join(str(v) for v in range(i * k, (i + 1) * k))
        flags += ["--edge", f"{agents[i - 1].listen}={ids}"]
    return flags


def memory_only_placement(memory, agents):
    """--memory-edge/--home-memory flags: the first agent lends the guest's RAM, home keeps a share of it."""
    mib = int(memory[:-1]) * (1024 if memory.endswith("G") else 1)
    return ["--memory-edge", f"{agents[0].listen}={memory}", "--home-memory", f"{mib // HOME_MEMORY_SHARE}M"]


def placement_name(nodes, home_only):
    if home_only or nodes == 1:
        return "one node"
    return "memory-only" if nodes == MEMORY_ONLY else f"{nodes} nodes"


def run_point(a, paths, agents, home_flags, w, nodes, vcpus, link, rep, home_only):
    """One guest run. home_only: all `vcpus` at home (the same work on one node). nodes: a count, or MEMORY_ONLY."""
    wl = WORKLOADS[w]
    cmd = [paths["coalesce"], "run", "--kernel", paths[wl.files[0]], "--vcpus", str(vcpus), "--memory", wl.memory,
           "--append", wl.append(a.quick, vcpus)]
    if len(wl.files) > 1:
        cmd += ["--initrd", paths[wl.files[1]]]
    if not home_only and nodes != 1:
        cmd += (memory_only_placement(wl.memory, agents) if nodes == MEMORY_ONLY
                else placement(nodes, a.vcpus_per_node, agents)) + home_flags
        if link != "loopback":
            cmd += ["--link", link]
    env = dict(os.environ, COALESCE_DSM_STATS="1")
    t0 = time.time()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=a.timeout, env=env)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, err, rc = (e.stdout or b"").decode(errors="replace"), (e.stderr or b"").decode(errors="replace"), None
    wall = time.time() - t0
    res = wl.parse(out, wall)
    row = {"workload": w, "nodes": 1 if home_only else 2 if nodes == MEMORY_ONLY else nodes, "vcpus": vcpus,
           "vcpus_per_node": a.vcpus_per_node, "placement": placement_name(nodes, home_only),
           "link": "none" if home_only or nodes == 1 else link, "rep": rep, "metric": wl.metric, "unit": wl.unit,
           "value": None, "work_s": None, "process_s": round(wall, 3), "exit_status": rc, "ok": False}
    if res is not None:
        row.update(value=round(res.value, 3), work_s=round(res.work_s, 6), ok=True, **res.extra)
    else:
        row["error"] = (f"no result (exit status {rc}); console tail: {out[-400:]!r}; stderr tail: {err[-400:]!r}")
    row.update(dsm_stats(err))
    return row


def main():
    a = parse_args()
    paths = guest_paths(ROOT)
    for name in {"coalesce"} | {f for w in a.workloads for f in WORKLOADS[w].files}:
        if not os.path.exists(paths[name]):
            sys.exit(f"harness: {paths[name]} is missing (run scripts/build.sh"
                     f"{' and scripts/guest-assets.sh' if name in ('vmlinuz', 'initramfs') else ''})")
    os.makedirs(a.out, exist_ok=True)
    host = host_description()
    k = a.vcpus_per_node
    # The matrix: per workload, the one-node baseline with k vCPUs, and for each N > 1 the same N*k vCPUs at
    # home (the same work on one node) and on N nodes over each link.
    points = []
    for w in a.workloads:
        if WORKLOADS[w].memory_only:
            v = max(k, WORKLOADS[w].min_vcpus)
            points.append((w, 1, v, "none", True))
            points += [(w, MEMORY_ONLY, v, link, False) for link in a.links]
            continue
        for n in sorted(a.nodes):
            v = max(n * k, WORKLOADS[w].min_vcpus)
            if n == 1:
                points.append((w, 1, v, "none", True))
                continue
            points.append((w, n, v, "none", True))
            for link in a.links:
                points.append((w, n, v, link, False))
    # Interleave repetitions so that drift in the host's load hits every point alike.
    plan = [(rep,) + p for rep in range(a.reps) for p in points]
    seen, unique = set(), []
    for p in plan:  # a one-node point at n*k vCPUs may repeat one of another n: run it once per repetition
        key = (p[0], p[1], p[3], p[4], p[5])
        if key not in seen:
            seen.add(key)
            unique.append(p)
    netns = None
    n_agents = max(max(a.nodes) - 1, 1 if any(WORKLOADS[w].memory_only for w in a.workloads) else 0)
    if a.netns:
        netns = NetnsNodes(paths["coalesce"], n_agents, "vcpus=16,memory=8G")
        agents, home_flags = netns.agents, netns.home_flags
    else:
        agents = [EdgeAgent(paths["coalesce"], capacity="vcpus=16,memory=8G") for _ in range(n_agents)]
        home_flags = []
    host["edges"] = "network namespaces, veth, mutual TLS" if a.netns else "loopback"
    print(f"harness: {len(unique)} runs ({len(a.workloads)} workloads, nodes {a.nodes}, links {a.links}, "
          f"{a.reps} repetition(s)); host: {host['cpus']} CPUs, {host['kvm']}", flush=True)
    rows, prog = [], Progress(len(unique))
    try:
        for rep, w, n, v, link, home_only in unique:
            prog.show(f"{w} {placement_name(n, home_only)} {v} vCPUs {'' if home_only else link}")
            for ag in agents:
                if ag.proc.poll() is not None:
                    sys.exit(f"\nharness: edge agent {ag.listen} exited (status {ag.proc.returncode})")
            rows.append(run_point(a, paths, agents, home_flags, w, n, v, link, rep, home_only))
            if not rows[-1]["ok"]:
                print(f"\n  {w} {placement_name(n, home_only)} {link}: {rows[-1]['error']}", flush=True)
            prog.step()
        prog.show("done")
        print(flush=True)
    finally:
        if netns:
            netns.stop()
        else:
            for ag in agents:
                ag.stop()
    # The scaling model and its plots take the vCPUs-per-node matrix; the memory workloads have a section of their
    # own in the report.
    scaling = [r for r in rows if not WORKLOADS[r["workload"]].memory_only]
    projection = model.fit_and_project(scaling, a.links, max(max(a.nodes), 8), k)
    outputs = report.write_all(a.out, host, vars(a), rows, projection)
    failed = [r for r in rows if not r["ok"]]
    for path in outputs:
        print(f"harness: wrote {path}")
    summary = report.headline(rows, projection)
    summary.update(runs=len(rows), failed_runs=len(failed), out=a.out)
    print(json.dumps(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
