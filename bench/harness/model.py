"""The scaling projection: a small model calibrated from what the harness measured, checked against the measured
points, and extrapolated to more nodes on every link class (docs/BENCHMARKS.md has the derivation).

For a workload with fixed work per vCPU (compute, sharing, the Linux jobs), on N nodes over link L:

    T(N, L) = T_local(N) + alpha * M(N) * c(L)

  T_local(N)  the same work with the same N*k vCPUs on one node (measured in the same run; beyond the measured
              points, linear in N, or constant from one point: each node brings its own cores)
  M(N)        messages the home node received during the N-node loopback run (DSM requests, grants,
              invalidation acks, forwarded IPIs and I/O): the link traversals the work needs (beyond the measured
              points linear in N, or from one point in proportion to the edge nodes, N - 1)
  c(L)        what a link adds to one traversal over loopback: one-way latency + mean jitter + the mean message
              size over the bandwidth
  alpha       the share of traversals on the critical path (vCPUs fault in parallel, so alpha < 1), fitted by
              least squares on the calibration link (the slowest emulated link measured) and then held fixed: the
              error on every other measured point is out of sample

Speedup over one node: S(N, L) = (V_N / V_1) * T1 / T(N, L), work growing with the vCPUs V_N = max(N*k, V_1)
(T1, V_1: the one-node run; the two-CPU workloads start at V_1 = 2). The overhead the N-node loopback run
showed over T_local(N) is kept (extrapolated linearly).
For the IPI round trip (a latency): RT(L) = RT(loopback) + 2 * c_small(L) with no fitted parameter."""
import re
import statistics

_DUR = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
# One-way latency, jitter (uniform [0, j]: mean j/2) and bandwidth in bytes/s of each class: dsm/link_spec.cc.
CLASSES = {
    "loopback": (0.0, 0.0, 0),
    "infiniband": (1e-6, 0.0, 100e9 / 8),
    "pcie": (0.9e-6, 0.0, 128e9 / 8),
    "5g-urllc": (1e-3, 0.1e-3, 100e6 / 8),
    "wifi6e": (2e-3, 0.5e-3, 1200e6 / 8),
    "5g": (14e-3, 2e-3, 300e6 / 8),
    "wifi-p90": (20e-3, 5e-3, 200e6 / 8),
}


def link_params(spec):
    """(one_way_s, jitter_s, bytes_per_s) of a class or explicit spec, as dsm/link_spec.cc reads it."""
    lat, jit, bw = 0.0, 0.0, 0
    for i, part in enumerate(spec.split(",")):
        if "=" not in part:
            lat, jit, bw = CLASSES[part]
            continue
        key, value = part.split("=", 1)
        if key in ("latency", "jitter"):
            m = re.fullmatch(r"([\d.]+)(ns|us|ms|s)", value)
            v = float(m.group(1)) * _DUR[m.group(2)]
            lat, jit = (v, jit) if key == "latency" else (lat, v)
        elif key == "bandwidth":
            m = re.fullmatch(r"([\d.]+)(Gbit|Mbit|kbit|bit)", value)
            bw = float(m.group(1)) * {"Gbit": 1e9, "Mbit": 1e6, "kbit": 1e3, "bit": 1}[m.group(2)] / 8
    return lat, jit, bw


def traversal_cost(spec, mean_bytes):
    lat, jit, bw = link_params(spec)
    return lat + jit / 2 + (mean_bytes / bw if bw else 0.0)


def median(rows, key):
    """The median of `key` over the rows that have it (None if none do)."""
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def speedup(n, k, v1, t1, t):
    """Speedup of n nodes (k vCPUs each, work growing with the vCPUs) taking t over one node's v1 vCPUs taking t1."""
    return max(n * k, v1) / v1 * t1 / t


def _linear(points, n):
    """Value at n from (N, value) points: a least-squares line through them (constant with one point)."""
    pts = sorted(points)
    if not pts:
        return None
    if len(pts) == 1:
        return pts[0][1]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return max(my + slope * (n - mx), min(ys) if slope < 0 else 0.0)


def _per_edge(points, n):
    """Traffic and overhead grow with the edge nodes: linear through the measured points, or from a single point
    N0 in proportion to the edges, value * (n - 1) / (N0 - 1)."""
    if len(points) == 1:
        (n0, v), = points.items()
        return v * (n - 1) / (n0 - 1)
    return _linear(list(points.items()), n)


def fit_and_project(rows, links, max_nodes, k):
    ok = [r for r in rows if r["ok"]]
    out = {"workloads": {}, "links": links, "max_nodes": max_nodes}
    for w in sorted({r["workload"] for r in ok}):
        wr = [r for r in ok if r["workload"] == w]
        one = [r for r in wr if r["nodes"] == 1]
        if w == "ipi":
            out["workloads"][w] = _ipi(wr, links)
            continue
        if w == "linux_boot" or not one:
            continue
        v1 = min(x["vcpus"] for x in one)
        t1 = median([r for r in one if r["vcpus"] == v1], "work_s")
        measured_n = sorted({r["nodes"] for r in wr if r["nodes"] > 1})
        local = {}  # N -> T_local(N): the N-node runs' vCPUs, all on one node
        for n in measured_n:
            v = next(r["vcpus"] for r in wr if r["nodes"] == n)
            t = median([r for r in one if r["vcpus"] == v], "work_s")
            if t is not None:
                local[n] = t
        msgs, sizes = {}, {}
        for n in measured_n:
            lb = [r for r in wr if r["nodes"] == n and r["link"] == "loopback"]
            if lb:
                msgs[n] = median(lb, "messages_received") or 0
                sizes[n] = (median(lb, "bytes_received") or 0) / msgs[n] if msgs[n] else 64
        emulated = [l for l in links if l != "loopback"]
        measured = {}  # (N, link) -> median work_s
        for n in measured_n:
            for l in links:
                t = median([r for r in wr if r["nodes"] == n and r["link"] == l], "work_s")
                if t is not None:
                    measured[(n, l)] = t
        # Fit alpha on the calibration link, T(N, L) - T(N, loopback) = alpha * M(N) * c(L): the slowest emulated link
        # measured, where the link's own cost dominates; on microsecond links the emulation's per-message cost (a
        # sender thread, a timer) would be taken for the link's and inflate alpha.
        with_points = [l for l in emulated if any((n, l) in measured for n in measured_n)]
        calib = max(with_points, key=lambda l: traversal_cost(l, 4096)) if with_points else None
        num = den = 0.0
        for n in measured_n:
            if calib and (n, calib) in measured and (n, "loopback") in measured and n in msgs:
                x = msgs[n] * traversal_cost(calib, sizes[n])
                num += x * (measured[(n, calib)] - measured[(n, "loopback")])
                den += x * x
        alpha = max(num / den, 0.0) if den else None
        checks = []
        for (n, l), t in sorted(measured.items()):
            if alpha is None or (n, "loopback") not in measured or n not in msgs:
                continue
            pred = measured[(n, "loopback")] + alpha * msgs[n] * traversal_cost(l, sizes[n])
            checks.append({"nodes": n, "link": l, "measured_s": t, "predicted_s": round(pred, 6),
                           "error": round(abs(pred - t) / t, 4), "in_sample": l in (calib, "loopback")})
        out_sample = [c["error"] for c in checks if not c["in_sample"]]
        all_err = [c["error"] for c in checks]
        proj = {}
        if alpha is not None and t1:
            lb_time = {n: measured[(n, "loopback")] for n in measured_n if (n, "loopback") in measured}
            overhead = {n: lb_time[n] - local[n] for n in lb_time if local.get(n) is not None}
            for l in links:
                row = {}
                for n in range(1, max_nodes + 1):
                    if n == 1:
                        row[n] = 1.0
                        continue
                    tl = _linear(list(local.items()), n)
                    ov = _per_edge(overhead, n) if overhead else 0.0
                    m = _per_edge(msgs, n)
                    size = statistics.mean(sizes.values()) if sizes else 64
                    t = tl + max(ov, 0.0) + alpha * m * traversal_cost(l, size)
                    row[n] = float(f"{speedup(n, k, v1, t1, t):.4g}") if t > 0 else None
                proj[l] = row
        out["workloads"][w] = {
            "t1_s": t1, "t_local_s": local, "messages": msgs, "mean_message_bytes": sizes, "alpha": alpha,
            "calibration_link": calib, "checks": checks,
            "fit_error_out_of_sample": round(statistics.mean(out_sample), 4) if out_sample else None,
            "fit_error_all": round(statistics.mean(all_err), 4) if all_err else None,
            "speedup": proj,
            "pays_on": [l for l, r in proj.items() if any(v and v > 1.0 for n, v in r.items() if n > 1)],
        }
    return out


def _ipi(wr, links):
    base = median([r for r in wr if r["nodes"] == 1], "value")
    two = [r for r in wr if r["nodes"] == 2]
    lb = median([r for r in two if r["link"] == "loopback"], "value")
    checks = []
    for l in links:
        t = median([r for r in two if r["link"] == l], "value")
        if t is None or lb is None or l == "loopback":
            continue
        pred = lb + 2 * traversal_cost(l, 64) * 1e6
        checks.append({"nodes": 2, "link": l, "measured_us": t, "predicted_us": round(pred, 1),
                       "error": round(abs(pred - t) / t, 4), "in_sample": False})
    errs = [c["error"] for c in checks]
    return {"one_node_us": base, "loopback_us": lb, "checks": checks,
            "fit_error_out_of_sample": round(statistics.mean(errs), 4) if errs else None,
            "round_trip_us": {l: round((lb or 0) + 2 * traversal_cost(l, 64) * 1e6, 1) for l in links}}
