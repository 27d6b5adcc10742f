#!/usr/bin/env python3
"""Linux boot time by stage, Debian's cloud kernel + the project's initramfs (scripts/guest-assets.sh), for
1 and 4 vCPUs (or --vcpus), under coalesce; and under `qemu-system-x86_64 -accel kvm -nographic -no-reboot`
with the same kernel, initrd, command line, vCPUs and memory in the same run, for the ratio.

Stages (host monotonic time from spawning the VMM): first console byte (earlyprintk: the kernel is running),
the first /init line ("COALESCE-GUEST:"), power-off (the VMM exits). Also: exits by kind and emulation
fallbacks by instruction (from --stats), and the hottest guest functions (--rip-samples + System.map).

On a host without hardware virtualization (PVM) QEMU cannot boot this kernel (its KVM stops at the first
instruction PVM's emulator fails on): the baseline is then reported as null with QEMU's failure, and the
ratio as null. Last line: one JSON object (name, value, unit, baseline, ratio).

Usage: run_linux_boot.py COALESCE ASSETS_DIR [--vcpus 1,4] [--memory 256M] [--timeout S] [--no-qemu]"""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "e2e"))
from symbolize import profile  # noqa: E402
from timed_run import run_timed  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("assets")
ap.add_argument("--vcpus", default="1,4")
ap.add_argument("--memory", default="256M")
ap.add_argument("--timeout", type=float, default=3000)
ap.add_argument("--no-qemu", action="store_true")
a = ap.parse_args()

kernel = os.path.join(a.assets, "vmlinuz")
initrd = os.path.join(a.assets, "initramfs.cpio")
system_map = os.path.join(a.assets, "System.map")
CMDLINE = 'console=ttyS0 earlyprintk=serial,ttyS0,115200 loglevel=4 coalesce.cmd="true"'


def timed_run(cmd):
    """Runs cmd; returns (rc, output, {stage: seconds}) with the stages seen on the console."""
    rc, out, stamps = run_timed(cmd, a.timeout, markers=("COALESCE-GUEST:",))
    stages = {"poweroff_s": stamps["exit_s"]}
    if "first_output_s" in stamps:
        stages["first_output_s"] = stamps["first_output_s"]
    if "COALESCE-GUEST:" in stamps:
        stages["init_s"] = stamps["COALESCE-GUEST:"]
    return rc, out, stages


def coalesce_boot(vcpus, samples):
    cmd = [a.coalesce, "run", "--kernel", kernel, "--initrd", initrd, "--vcpus", str(vcpus), "--memory", a.memory,
           "--stats", "--rip-samples", samples, "--append", CMDLINE]
    rc, out, stages = timed_run(cmd)
    exits, emulated = {}, {}
    for line in out.splitlines():
        if re.match(r"vcpu\d+: state=", line):
            for kind, n in re.findall(r" (\w+)=(\d+)", line.split(" emulated:")[0]):
                if kind not in ("state", "injections", "pv_eois", "halts", "halts_polled"):
                    exits[kind] = exits.get(kind, 0) + int(n)
            if " emulated:" in line:
                for name, n in re.findall(r" ([\w.]+)=(\d+)", line.split(" emulated:")[1]):
                    emulated[name] = emulated.get(name, 0) + int(n)
    return rc, out, stages, exits, emulated


def qemu_boot(vcpus):
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        return None, "qemu-system-x86_64 not installed"
    cmd = [qemu, "-accel", "kvm", "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
           "-append", CMDLINE, "-smp", str(vcpus), "-m", a.memory, "-cpu", "host"]
    rc, out, stages = timed_run(cmd)
    if rc != 0 or "init_s" not in stages:
        tail = " | ".join(out.strip().splitlines()[-3:])[-300:]
        return None, f"QEMU did not boot it (exit {rc}): {tail}"
    return stages, None


results = []
for vcpus in [int(v) for v in a.vcpus.split(",")]:
    with tempfile.NamedTemporaryFile(prefix="coalesce-rip-", delete=False) as f:
        samples = f.name
    rc, out, stages, exits, emulated = coalesce_boot(vcpus, samples)
    ok = rc == 0 and "init_s" in stages
    entry = {"vcpus": vcpus, "ok": ok, "exit_status": rc, **{k: round(v, 2) for k, v in stages.items()},
             "exits": exits, "emulated": dict(sorted(emulated.items(), key=lambda kv: -kv[1])[:15])}
    if os.path.exists(system_map) and os.path.getsize(samples) > 0:
        total, counts = profile(system_map, samples)
        entry["hot_functions"] = [[n, round(100.0 * c / total, 1)] for n, c in counts.most_common(10)]
    os.unlink(samples)
    print(f"coalesce, {vcpus} vCPU(s): {json.dumps(entry)}", flush=True)
    if not ok:
        print(out[-3000:])
    if not a.no_qemu:
        q, why = qemu_boot(vcpus)
        entry["qemu"] = {k: round(v, 2) for k, v in q.items()} if q else {"error": why}
        print(f"qemu, {vcpus} vCPU(s): {json.dumps(entry['qemu'])}", flush=True)
    results.append(entry)

first = results[0]
q = first.get("qemu", {})
baseline = q.get("poweroff_s")
value = first.get("poweroff_s") if first["ok"] else None
print(json.dumps({"name": "linux_boot_time", "value": value, "unit": "s", "baseline": baseline,
                  "ratio": round(value / baseline, 3) if value and baseline else None,
                  "baseline_kind": "qemu-system-x86_64 -accel kvm, same kernel/initrd/cmdline/vCPUs/memory, same run",
                  "vcpus": first["vcpus"], "runs": results}))
