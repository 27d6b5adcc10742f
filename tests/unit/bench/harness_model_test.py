#!/usr/bin/env python3
"""The harness's scaling model (bench/harness/model.py) against runs made up from the model's own equation with
known parameters: the fit must recover alpha, predict every point exactly, and project the speedups the equation
gives by hand; and the link costs must be what dsm/link_spec.cc's classes say. No KVM, no matplotlib."""
import math
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "bench", "harness"))
import model  # noqa: E402

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def close(a, b, rel=1e-6):
    return a is not None and b is not None and math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def row(w, nodes, vcpus, link, work_s, messages=None, nbytes=None, value=1.0):
    r = {"workload": w, "nodes": nodes, "vcpus": vcpus, "vcpus_per_node": 1, "link": link, "ok": True,
         "value": value, "work_s": work_s}
    if messages is not None:
        r.update(messages_received=messages, bytes_received=nbytes)
    return r


# Link costs: one way + mean jitter + bytes over bandwidth, per class.
check(close(model.traversal_cost("wifi6e", 4096), 2e-3 + 0.25e-3 + 4096 / (1200e6 / 8)), "wifi6e cost")
check(close(model.traversal_cost("5g,jitter=4ms", 0), 14e-3 + 2e-3), "a class with its jitter replaced")
check(close(model.traversal_cost("latency=250us,bandwidth=8Mbit", 1000), 250e-6 + 1000 / 1e6), "explicit spec")
check(model.traversal_cost("loopback", 4096) == 0.0, "loopback adds nothing")

# The model's table of link classes is the transport's (dsm/link_spec.cc), read from its source.
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "dsm", "link_spec.cc")
UNIT = {"Nanoseconds": 1e-9, "Microseconds": 1e-6, "Milliseconds": 1e-3, "Seconds": 1.0}


def duration(text):
    if text.strip() == "absl::ZeroDuration()":
        return 0.0
    m = re.fullmatch(r"absl::(\w+)\((\d+)\)", text.strip())
    return int(m.group(2)) * UNIT[m.group(1)]


with open(SRC) as f:
    src = f.read()
table = re.findall(r'\{"([\w-]+)",\s*"[^"]*",\s*Link\(([^,]+),\s*([^,]+),\s*([\d\']+) \* kMbit\)\}', src)
check(len(table) == len(model.CLASSES) - 1, f"every emulated class of link_spec.cc is in the model ({len(table)})")
for name, lat, jit, mbit in table:
    want = (duration(lat), duration(jit), int(mbit.replace("'", "")) * 1e6 / 8)
    got = model.CLASSES.get(name)
    check(got is not None and all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(got, want)),
          f"{name}: model {got} = link_spec.cc {want}")

# Runs generated from T(N, L) = T_local(N) + overhead(N) + alpha * M(N) * c(L) with alpha = 0.3.
ALPHA, T1, TLOCAL2, OVER2, MSGS2, SIZE = 0.3, 1.0, 1.1, 0.2, 5000, 2048.0
links = ["loopback", "latency=100us", "latency=1ms,jitter=200us", "wifi6e"]
rows = [row("compute", 1, 1, "none", T1), row("compute", 1, 2, "none", TLOCAL2)]
for l in links:
    t = TLOCAL2 + OVER2 + ALPHA * MSGS2 * model.traversal_cost(l, SIZE)
    rows.append(row("compute", 2, 2, l, t, MSGS2, MSGS2 * SIZE))
p = model.fit_and_project(rows, links, 4, 1)["workloads"]["compute"]
check(close(p["alpha"], ALPHA), f"alpha recovered ({p['alpha']})")
check(p["calibration_link"] == "wifi6e", "the slowest emulated link calibrates")
check(all(c["error"] < 1e-9 for c in p["checks"]), "every measured point predicted exactly")
check(p["fit_error_out_of_sample"] is not None and p["fit_error_out_of_sample"] < 1e-9, "out-of-sample error ~0")
check(len([c for c in p["checks"] if not c["in_sample"]]) == 2, "two points out of sample")
# Projection at N = 3 by hand: T_local constant (one point), overhead and messages grow with the edges (N - 1).
c = model.traversal_cost("wifi6e", SIZE)
t3 = TLOCAL2 + OVER2 * 2 + ALPHA * MSGS2 * 2 * c
check(close(p["speedup"]["wifi6e"][3], float(f"{3 * T1 / t3:.4g}"), 1e-3), "S(3) over wifi6e as computed by hand")
check(p["speedup"]["loopback"][1] == 1.0, "S(1) = 1")
check("loopback" in p["pays_on"] and "wifi6e" not in p["pays_on"], f"pays on {p['pays_on']}")

# The IPI model: RT(L) = RT(loopback) + 2 c(L), in microseconds.
ipi = [row("ipi", 1, 2, "none", 0.1, value=10.0), row("ipi", 2, 2, "loopback", 0.1, 9, 9, value=50.0),
       row("ipi", 2, 2, "latency=1ms", 0.1, 9, 9, value=50.0 + 2 * (1000 + 64 * 0))]
q = model.fit_and_project(ipi, ["loopback", "latency=1ms"], 4, 1)["workloads"]["ipi"]
check(close(q["round_trip_us"]["latency=1ms"], 2050.0), f"ipi over 1 ms predicted 2050 us ({q['round_trip_us']})")
check(q["fit_error_out_of_sample"] is not None and q["fit_error_out_of_sample"] < 1e-6, "ipi error ~0")

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("harness model: PASS")
