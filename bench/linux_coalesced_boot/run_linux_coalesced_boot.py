#!/usr/bin/env python3
"""Linux boot with 2 vCPUs on one node against 1 + 1 on two nodes (home + an edge agent, separate processes),
same kernel, initramfs and command line, same run. Reports boot time by stage for both, the DSM faults and
forwarded accesses of the coalesced boot, and its hottest guest pages named from System.map (kernel image
pages by symbol; other pages are page-allocator memory reached through the direct map).

Last line: one JSON object (name, value, unit, baseline, ratio); value = coalesced power-off time.

Usage: run_linux_coalesced_boot.py COALESCE ASSETS_DIR [--memory 256M] [--timeout S]"""
import argparse
import bisect
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
from edge_agent_process import EdgeAgent  # noqa: E402
from timed_run import run_timed  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("assets")
ap.add_argument("--memory", default="256M")
ap.add_argument("--timeout", type=float, default=3600)
a = ap.parse_args()
kernel = os.path.join(a.assets, "vmlinuz")
initrd = os.path.join(a.assets, "initramfs.cpio")
system_map = os.path.join(a.assets, "System.map")
CMDLINE = 'console=ttyS0 loglevel=4 coalesce.cmd="true"'
# Debian's kernel runs where it is linked: physical 0x1000000 is virtual 0xffffffff81000000 (docs/BOOT.md).
KERNEL_PHYS, KERNEL_VIRT = 0x1000000, 0xffffffff81000000


def boot(extra):
    cmd = [a.coalesce, "run", "--kernel", kernel, "--initrd", initrd, "--vcpus", "2", "--memory", a.memory,
           "--stats", "--append", CMDLINE] + extra
    rc, out, stamps = run_timed(cmd, a.timeout, markers=("COALESCE-GUEST:",))
    stages = {"poweroff_s": round(stamps["exit_s"], 1)}
    if "COALESCE-GUEST:" in stamps:
        stages["init_s"] = round(stamps["COALESCE-GUEST:"], 1)
    return rc, out, stages


def kernel_symbols():
    syms = []
    if os.path.exists(system_map):
        with open(system_map) as f:
            for line in f:
                p = line.split()
                if len(p) >= 3 and p[2] and int(p[0], 16) >= KERNEL_VIRT:
                    syms.append((int(p[0], 16), p[2]))
    syms.sort()
    return [s[0] for s in syms], [s[1] for s in syms]


def name_page(phys, addrs, names):
    if not addrs or not (KERNEL_PHYS <= phys < KERNEL_PHYS + (addrs[-1] - KERNEL_VIRT)):
        return "page allocator / direct map"
    virt = phys - KERNEL_PHYS + KERNEL_VIRT
    i = bisect.bisect_right(addrs, virt + 4095) - 1
    # The symbols inside the page, or the one it starts in.
    inside = [names[j] for j in range(max(i - 3, 0), i + 1) if addrs[j] >= virt or j == i]
    return ",".join(inside[-3:])


agent = EdgeAgent(a.coalesce, capacity="vcpus=2,memory=1G")
try:
    rc_home, out_home, home = boot([])
    rc_split, out_split, split = boot(["--edge", f"{agent.listen}=1"])
finally:
    agent.stop()
faults = sum(int(n) for n in re.findall(r"faults \S+\s+(\d+)", out_split))
served = re.search(r"remote I/O accesses served=(\d+), interrupts relayed=(\d+)", out_split)
addrs, names = kernel_symbols()
hot = [(int(p, 16), int(n)) for p, n in re.findall(r" (0x[0-9a-f]+)\((\d+)\)", out_split.split("hottest pages:")[-1])]
hot_named = [[hex(p), n, name_page(p, addrs, names)] for p, n in hot] if "hottest pages:" in out_split else []
ok = rc_home == 0 and rc_split == 0 and "init_s" in home and "init_s" in split
for label, out, rc in (("2 at home", out_home, rc_home), ("1 home + 1 edge", out_split, rc_split)):
    if rc != 0:
        print(f"{label}: exit {rc}\n{out[-3000:]}")
print(f"2 vCPUs at home: {home}; 1 home + 1 edge: {split}; DSM faults {faults}; hot pages {hot_named}", flush=True)
value, baseline = split.get("poweroff_s"), home.get("poweroff_s")
print(json.dumps({"name": "linux_boot_coalesced", "value": value if ok else None, "unit": "s",
                  "baseline": baseline if ok else None,
                  "ratio": round(value / baseline, 3) if ok and baseline else None,
                  "baseline_kind": "the same guest with 2 vCPUs on one node, same run",
                  "home_stages": home, "coalesced_stages": split, "dsm_faults": faults,
                  "remote_io_served": int(served.group(1)) if served else None,
                  "interrupts_relayed": int(served.group(2)) if served else None, "hot_pages": hot_named}))
