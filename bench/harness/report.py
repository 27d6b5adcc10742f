"""The harness's outputs: results.csv and results.json (every run, the host, the matrix, the projection), PNG and
SVG plots made with matplotlib (Debian's python3-matplotlib, headless Agg backend), and report.md."""
import csv
import json
import os

import matplotlib

from model import median, speedup

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIELDS = ["workload", "placement", "nodes", "vcpus", "vcpus_per_node", "link", "rep", "metric", "unit", "value",
          "work_s", "process_s", "exit_status", "ok", "link_rtt_ms", "messages_sent", "messages_received", "bytes_sent",
          "bytes_received", "pages_sent", "pages_received", "invalidations_sent", "faults_read_miss",
          "fault_read_miss_p50_us", "fault_read_miss_p90_us", "fault_read_miss_p99_us", "faults_write_miss",
          "fault_write_miss_p50_us", "fault_write_miss_p99_us", "error"]


def _save(fig, out, name):
    paths = []
    for ext in ("png", "svg"):
        p = os.path.join(out, f"{name}.{ext}")
        fig.savefig(p, dpi=110, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def plot_speedup(out, rows, projection):
    """Speedup against nodes, one panel per workload: measured points and the model's lines, per link class."""
    ws = [w for w, p in projection["workloads"].items() if "speedup" in p and p["speedup"]]
    if not ws:
        return []
    fig, axes = plt.subplots(1, len(ws), figsize=(5.5 * len(ws), 4.2), squeeze=False)
    for ax, w in zip(axes[0], ws):
        p = projection["workloads"][w]
        v1 = min(r["vcpus"] for r in rows if r["ok"] and r["workload"] == w and r["nodes"] == 1)
        k = next(r["vcpus_per_node"] for r in rows if r["workload"] == w)
        for i, (link, line) in enumerate(p["speedup"].items()):
            color = f"C{i}"
            ns = sorted(int(n) for n in line)
            ax.plot(ns, [line[n] for n in ns], "--", color=color, alpha=0.7, label=f"{link} (model)")
            pts = []
            for n in sorted({r["nodes"] for r in rows if r["workload"] == w and r["link"] == link}):
                t = median([r for r in rows if r["ok"] and r["workload"] == w and r["nodes"] == n
                             and r["link"] == link], "work_s")
                if t:
                    pts.append((n, speedup(n, k, v1, p["t1_s"], t)))
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], "o", color=color, label=f"{link} (measured)")
        ax.plot([1], [1.0], "ks", label="one node")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xlabel("nodes")
        ax.set_ylabel("speedup over one node")
        ax.set_title(f"{w} (alpha={p['alpha']:.3g})" if p.get("alpha") is not None else w)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    return _save(fig, out, "speedup")


def plot_fault_latency(out, rows):
    """The home node's fault latency distribution (p50, p90, p99 of read misses) per link class, multi-node runs."""
    data = {}
    for r in rows:
        if r["ok"] and r["nodes"] > 1 and r.get("fault_read_miss_p50_us") is not None:
            data.setdefault(r["link"], []).append(r)
    if not data:
        return []
    links = list(data)
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(links)), 4))
    for j, q in enumerate(("p50", "p90", "p99")):
        vals = [median(data[l], f"fault_read_miss_{q}_us") for l in links]
        ax.bar([i + (j - 1) * 0.27 for i in range(len(links))], vals, 0.27, label=q)
    ax.set_xticks(range(len(links)), links)
    ax.set_yscale("log")
    ax.set_ylabel("read fault at home, us")
    ax.set_title("fault latency distribution per link (home node, all workloads)")
    ax.legend()
    return _save(fig, out, "fault_latency")


def plot_traffic(out, rows):
    """Data-plane bytes per second of work, per workload and link (multi-node runs, home node's view)."""
    keys = sorted({(r["workload"], r["link"]) for r in rows if r["ok"] and r["nodes"] > 1 and r.get("bytes_sent")})
    if not keys:
        return []
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(keys)), 4))
    vals = []
    for w, l in keys:
        rs = [r for r in rows if r["ok"] and r["workload"] == w and r["link"] == l and r["nodes"] > 1]
        vals.append(median(rs, "bytes_sent") + median(rs, "bytes_received"))
    ax.bar(range(len(keys)), [v / 1e6 for v in vals])
    ax.set_xticks(range(len(keys)), [f"{w}\n{l}" for w, l in keys], fontsize=7)
    ax.set_ylabel("MB over the data plane (home, both ways)")
    ax.set_title("traffic per workload")
    return _save(fig, out, "traffic")


def headline(rows, projection):
    """The harness's closing JSON line: the compute workload on the fewest nodes measured over loopback (two, unless
    --nodes skips it) against the same vCPUs on one node (or the first workload measured), plus every model fit
    error."""
    ok = [r for r in rows if r["ok"]]
    for w in ["compute"] + sorted({r["workload"] for r in ok}):
        multi = sorted({r["nodes"] for r in ok if r["workload"] == w and r["nodes"] > 1 and r["link"] == "loopback"})
        if not multi:
            continue
        two = [r for r in ok if r["workload"] == w and r["nodes"] == multi[0] and r["link"] == "loopback"]
        base = [r for r in ok if r["workload"] == w and r["nodes"] == 1 and r["vcpus"] == two[0]["vcpus"]]
        value, baseline = median(two, "value"), median(base, "value")
        if value is None or not baseline:
            continue
        memory_only = two[0]["placement"] == "memory-only"
        return {"name": f"harness_{w}_{'memory_only' if memory_only else f'{multi[0]}_nodes'}_loopback",
                "value": value, "unit": two[0]["unit"], "baseline": baseline, "ratio": round(value / baseline, 3),
                "baseline_kind": "the same vCPUs on one node" + (", all RAM at home" if memory_only else "")
                                 + ", same run",
                "fit_error_out_of_sample": {w2: p.get("fit_error_out_of_sample")
                                            for w2, p in projection["workloads"].items()}}
    return {"name": "harness", "value": None, "unit": "", "baseline": None, "ratio": None}


def markdown(host, args, rows, projection, plots):
    ok = [r for r in rows if r["ok"]]
    lines = ["# Coalesce benchmark harness report", "",
             f"Host: {host['cpus']} CPUs ({host['cpu_model']}), kernel {host['kernel']}, KVM: {host['kvm']}, "
             f"load {host['load_avg_1m']} at start, {host['date']}. Every node is a process on this host "
             "(the edges' runtimes too), so nodes share its cores: measured speedups here include that sharing.",
             "", f"Matrix: workloads {', '.join(args['workloads'])}; nodes {args['nodes']} "
             f"({args['vcpus_per_node']} vCPU(s) per node); links {', '.join(args['links'])}; "
             f"{args['reps']} repetition(s); {len(rows)} runs, {len(rows) - len(ok)} failed.", "",
             "## Measured (medians)", "",
             "| workload | placement | vCPUs | link | figure | same vCPUs on one node | ratio | home rx msgs | fault p50/p99 us |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["workload"], r["nodes"], r["placement"], r["vcpus"], r["link"]) for r in ok})
    for w, n, where, v, l in keys:
        rs = [r for r in ok
              if (r["workload"], r["nodes"], r["placement"], r["vcpus"], r["link"]) == (w, n, where, v, l)]
        val = median(rs, "value")
        base = median([r for r in ok if r["workload"] == w and r["nodes"] == 1 and r["vcpus"] == v], "value")
        ratio = f"{val / base:.3f}" if base and n > 1 else ""
        p50, p99 = median(rs, "fault_read_miss_p50_us"), median(rs, "fault_read_miss_p99_us")
        lines.append(f"| {w} | {where} | {v} | {l} | {val} {rs[0]['unit']} | "
                     f"{base if n > 1 else ''} | {ratio} | {median(rs, 'messages_received') or ''} | "
                     f"{'' if p50 is None else f'{p50:.0f}/{p99:.0f}'} |")
    if any(r["placement"] == "memory-only" for r in rows):
        lines += ["", "Memory-only rows: every vCPU at home, which keeps a quarter of the guest's RAM (--home-memory); "
                  "a memory edge that runs no vCPU holds the rest, and home's DSM spills pages there and faults them "
                  "back over the link (docs/COALESCENCE.md, \"Memory edges\"). Their ratio is what lent memory costs "
                  "against the same guest with all its RAM at home; the scaling model below leaves them out."]
    lines += ["", "## Scaling projection", "",
              "Model (bench/harness/model.py, docs/BENCHMARKS.md): T(N, L) = T_local(N) + alpha * M(N) * c(L), "
              "alpha fitted on the calibration link; errors on other points are out of sample.", ""]
    for w, p in projection["workloads"].items():
        if w == "ipi":
            lines.append(f"- **ipi**: one node {p['one_node_us']} us, two nodes over loopback {p['loopback_us']} us; "
                         f"predicted round trip per link: {p['round_trip_us']}; mean error "
                         f"{p['fit_error_out_of_sample']}")
            continue
        err = p.get("fit_error_out_of_sample")
        alpha = "n/a" if p["alpha"] is None else f"{p['alpha']:.4g}"
        lines.append(f"- **{w}**: T1 = {p['t1_s']} s, alpha = {alpha}, calibrated on "
                     f"{p['calibration_link']}; mean fit error {p['fit_error_all']} (all points), "
                     f"{'n/a (no point outside the calibration)' if err is None else err} out of sample; "
                     f"coalescence pays (projected speedup > 1 somewhere up to {projection['max_nodes']} nodes) "
                     f"on: {', '.join(p['pays_on']) or 'none of the links measured'}")
        if p["speedup"]:
            ns = [n for n in (2, 3, 4, 8) if n <= projection["max_nodes"]]
            lines += ["", "  | link | " + " | ".join(f"S({n})" for n in ns) + " |",
                      "  |---|" + "---|" * len(ns)]
            for l, row in p["speedup"].items():
                lines.append(f"  | {l} | " + " | ".join(str(row.get(n)) for n in ns) + " |")
            lines.append("")
    lines += ["", "## Plots", ""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots
                                     if p.endswith(".png")]
    failed = [r for r in rows if not r["ok"]]
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {r['workload']} {r['placement']} {r['link']}: {r['error']}"
                                               for r in failed]
    return "\n".join(lines) + "\n"


def write_all(out, host, args, rows, projection):
    paths = []
    p = os.path.join(out, "results.csv")
    with open(p, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        wr.writeheader()
        wr.writerows(rows)
    paths.append(p)
    p = os.path.join(out, "results.json")
    with open(p, "w") as f:
        json.dump({"host": host, "matrix": args, "runs": rows, "projection": projection}, f, indent=1, default=str)
    paths.append(p)
    plots = plot_speedup(out, rows, projection) + plot_fault_latency(out, rows) + plot_traffic(out, rows)
    paths += plots
    p = os.path.join(out, "report.md")
    with open(p, "w") as f:
        f.write(markdown(host, args, rows, projection, plots))
    paths.append(p)
    return paths
