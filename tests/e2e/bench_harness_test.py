#!/usr/bin/env python3
"""The benchmark harness's quick mode (bench/harness/harness.py --quick), as CI runs it: every run succeeds and
every output is produced and consistent with the others (CSV and JSON rows, plots, report, closing JSON line,
the projection's fit errors). The figures themselves are reported, not asserted (docs/BENCHMARKS.md).

Usage: bench_harness_test.py HARNESS_PY"""
import csv
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kvm_required import kvm_problem  # noqa: E402

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def main():
    problem = kvm_problem()
    if problem:
        print(f"FAIL bench harness quick mode: {problem}; it needs KVM")
        sys.exit(1)
    harness = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="harness-quick-") as out:
        # Debian's interpreter: the one python3-matplotlib is installed for.
        p = subprocess.run(["/usr/bin/python3", harness, "--quick", "--out", out], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=1500)
        print(p.stdout[-6000:])
        print(p.stderr[-3000:], file=sys.stderr)
        check(p.returncode == 0, f"harness --quick exits 0 (got {p.returncode})")
        last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        try:
            summary = json.loads(last)
        except ValueError:
            summary = {}
        for key in ("name", "value", "unit", "baseline", "ratio"):
            check(summary.get(key) not in (None, ""), f"closing JSON line has {key}")
        check(summary.get("failed_runs") == 0, "no run failed")
        check("[" in p.stdout and "left" in p.stdout, "progress is shown")

        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)
        runs = results["runs"]
        check(len(runs) == summary.get("runs"), f"results.json holds every run ({len(runs)})")
        check(results["host"].get("cpus", 0) >= 1 and results["host"].get("kvm"), "the host is described")
        with open(os.path.join(out, "results.csv")) as f:
            rows = list(csv.DictReader(f))
        check(len(rows) == len(runs), "results.csv has one row per run")
        check(all(float(r["value"]) == j["value"] for r, j in zip(rows, runs)), "CSV and JSON figures agree")
        workloads = {r["workload"] for r in runs}
        check(workloads == {"compute", "sharing", "ipi", "memory"},
              f"the quick matrix's workloads ran ({sorted(workloads)})")
        # The memory workload's two-node runs are the memory-only placement: every vCPU at home, a memory edge
        # lending most of the RAM; the others' are one vCPU per node.
        check(all((r["placement"] == "memory-only") == (r["workload"] == "memory") for r in runs if r["nodes"] == 2),
              "two-node runs: memory-only for the memory workload, vCPUs on both nodes for the others")
        check(all(r["vcpus"] == 1 for r in runs if r["workload"] == "memory"), "memory: one vCPU, at home")
        check(all(r.get("pages_sent", 0) > 0 for r in runs if r["placement"] == "memory-only"),
              "memory-only runs: home spilled pages to the memory edge")
        for w in workloads:
            wr = [r for r in runs if r["workload"] == w]
            check(any(r["nodes"] == 1 for r in wr) and any(r["nodes"] == 2 for r in wr),
                  f"{w}: one-node baseline and two-node runs")
            links = {r["link"] for r in wr if r["nodes"] == 2}
            check(len(links) == 3, f"{w}: two nodes over loopback and both emulated links ({sorted(links)})")
            check(all(r["ok"] and r["value"] > 0 and r["work_s"] > 0 for r in wr), f"{w}: every figure positive")
            check(all(r.get("messages_received", 0) > 0 for r in wr if r["nodes"] == 2),
                  f"{w}: two-node runs carry data-plane traffic")
        # The emulated links were really there: home's measured round trip (docs/NUMA.md) is at least twice the
        # one-way latency on every two-node run over them. (Fault latencies are not compared: in the nested VM
        # under TCG a fault takes milliseconds, and 200 us drowns in their spread.)
        rtt = [(r["link"], r.get("link_rtt_ms")) for r in runs if r["nodes"] == 2]
        floor = {"latency=200us": 0.4, "latency=50us": 0.1}
        check(all(v is not None for _, v in rtt) and
              all(v >= f for l, v in rtt for p, f in floor.items() if l.startswith(p)),
              f"every two-node run measured its link, the emulated ones at least twice their latency ({rtt})")
        proj = results["projection"]["workloads"]
        for w in ("compute", "sharing"):
            check(proj[w]["alpha"] is not None and proj[w]["fit_error_out_of_sample"] is not None,
                  f"{w}: the model is calibrated and its out-of-sample error reported")
            check(all(len(line) == results["projection"]["max_nodes"] for line in proj[w]["speedup"].values()),
                  f"{w}: a projection for every node count")
        check(proj["ipi"]["fit_error_out_of_sample"] is not None, "ipi: the round-trip model's error is reported")
        for name in ("speedup", "fault_latency", "traffic"):
            with open(os.path.join(out, f"{name}.png"), "rb") as f:
                check(f.read(8) == b"\x89PNG\r\n\x1a\n", f"{name}.png is a PNG")
            with open(os.path.join(out, f"{name}.svg")) as f:
                check("<svg" in f.read(), f"{name}.svg is an SVG")
        with open(os.path.join(out, "report.md")) as f:
            md = f.read()
        check("memory" not in proj, "the scaling model leaves the memory-only workload out")
        for part in ("## Measured", "## Scaling projection", "speedup.png", "compute", "sharing", "ipi", "memory-only"):
            check(part in md, f"report.md has {part!r}")
    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        sys.exit(1)
    print("bench harness quick mode: PASS")


if __name__ == "__main__":
    main()
