#!/usr/bin/env python3
"""Exits per 4 KiB random read on a virtio disk, Coalesce against QEMU: each VMM boots the same guest twice, 10
reads and 2010 reads (bench/disk_io/diskio.c on a fresh qcow2), and every counter's difference is divided by the
2000 extra reads, so that boot and power-off cancel out. Run it where KVM is (`scripts/kvm-vm -- ...` on a host
without it). A diagnostic beside the disk benchmark, not one itself. Three kinds of counters:

- Coalesce's own exits to user space (`--stats`), its halts and how many the halt poll caught: the value;
- KVM's exit counters (debugfs /sys/kernel/debug/kvm: every exit of the guest, to the VMM or handled inside
  KVM), for both VMMs: with QEMU's in-kernel APIC none of its exits reach user space, so this is where the two
  compare. KVM keeps a VM's counters only while it lives, so they are sampled every 20 ms during the run and
  the last sample counts (the power-off's last moments are lost in both);
- the host's interrupts (/proc/interrupts: local timer, rescheduling and function-call IPIs), each of which
  makes a running vCPU exit.
KVM's counters need root and debugfs; without them that part is left out and said so. The last line is one JSON
object: name, value (Coalesce's exits to user space per read), unit, and every counter per read.

Usage: exits_per_request.py COALESCE DISKIO ASSETS_DIR"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

coalesce, diskio, assets = sys.argv[1:4]
kernel, initrd = os.path.join(assets, "vmlinuz"), os.path.join(assets, "initramfs.cpio")
work = tempfile.mkdtemp(prefix="coalesce-exits-")
tools_dir = os.path.join(work, "tools")
os.makedirs(tools_dir)
shutil.copy(diskio, os.path.join(tools_dir, "diskio"))
tools = os.path.join(work, "tools.ext2")
subprocess.run(["mke2fs", "-q", "-t", "ext2", "-d", tools_dir, tools, "8M"], check=True)

KVM_STATS = "/sys/kernel/debug/kvm"
KVM_COUNTERS = ["exits", "halt_exits", "irq_exits", "irq_window_exits", "io_exits", "mmio_exits", "insn_emulation",
                "signal_exits", "host_state_reload"]
if not os.path.isdir(KVM_STATS) and os.geteuid() == 0:
    subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"], capture_output=True)
kvm_stats = os.path.isfile(os.path.join(KVM_STATS, "exits"))
if not kvm_stats:
    print("KVM's counters: not readable here (needs root and debugfs); Coalesce's own only", flush=True)


def kvm_snapshot():
    out = {}
    for name in KVM_COUNTERS:
        try:
            with open(os.path.join(KVM_STATS, name)) as f:
                out["kvm_" + name] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def host_interrupts():
    out = {}
    with open("/proc/interrupts") as f:
        for line in f.read().splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] in ("LOC:", "RES:", "CAL:"):
                out["host_" + parts[0].rstrip(":")] = sum(int(x) for x in parts[1:] if x.isdigit())
    return out


def counters(vmm, reads):
    img = os.path.join(work, "data.qcow2")
    if os.path.exists(img):
        os.unlink(img)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "128M"], check=True)
    load = f"mkdir -p /t && mount -o ro /dev/vdb /t && /t/diskio /dev/vda randread 4096 {reads} 64"
    append = f'console=ttyS0 loglevel=4 coalesce.modules=1 coalesce.cmd="{load}"'
    if vmm == "coalesce":
        cmd = [coalesce, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M", "--stats",
               "--disk", f"{img},format=qcow2", "--disk", f"{tools},format=raw,readonly=on", "--append", append]
    else:
        cmd = [shutil.which("qemu-system-x86_64") or "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host",
               "-m", "256M", "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd, "-append", append,
               "-drive", f"file={img},format=qcow2,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0",
               "-drive", f"file={tools},format=raw,if=none,id=d1,readonly=on", "-device", "virtio-blk-pci,drive=d1"]
    last, stop = {}, threading.Event()

    def sample():
        while not stop.is_set():
            now = kvm_snapshot()
            if now.get("kvm_exits", 0) >= last.get("kvm_exits", 0):
                last.update(now)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample) if kvm_stats else None
    before = host_interrupts()
    if sampler:
        sampler.start()
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900).stdout
    finally:
        stop.set()
        if sampler:
            sampler.join()
    after = host_interrupts()
    if f"count={reads} " not in out:
        sys.exit(f"{vmm}: the {reads}-read run did not finish:\n{out[-2000:]}")
    total = dict(last)
    total.update({k: after[k] - before.get(k, 0) for k in after})
    for line in out.splitlines():
        if re.match(r"vcpu\d+: state=", line):
            for kind, n in re.findall(r" (\w+)=(\d+)", line.split(" emulated:")[0]):
                if kind != "state":
                    total[kind] = total.get(kind, 0) + int(n)
    print(f"{vmm}, {reads} reads: {total}", flush=True)
    return total


def per_read(vmm):
    few, many = counters(vmm, 10), counters(vmm, 2010)
    return {k: round((many.get(k, 0) - few.get(k, 0)) / 2000, 2) for k in many}


ours, qemus = per_read("coalesce"), per_read("qemu")
not_exits = ("injections", "pv_eois", "halts", "halts_polled")
exits = round(sum(v for k, v in ours.items() if k not in not_exits and not k.startswith(("kvm_", "host_"))), 2)
shutil.rmtree(work, ignore_errors=True)
print(json.dumps({"name": "disk_exits_per_read", "value": exits, "unit": "exits to user space per 4 KiB random read",
                  "per_read": ours, "qemu_per_read": qemus,
                  "kvm_exits": {"coalesce": ours.get("kvm_exits"), "qemu": qemus.get("kvm_exits")}}))
