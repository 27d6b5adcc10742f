#!/usr/bin/env python3
"""Exits to user space per 4 KiB random read on Coalesce's virtio disk: the same guest run twice with `--stats`,
10 reads and 2010 reads (bench/disk_io/diskio.c on a fresh qcow2), and every counter's difference divided by the
2000 extra reads, so that boot and power-off cancel out. Run it where KVM is (`scripts/kvm-vm -- ...` on a host
without it). A diagnostic beside the disk benchmark, not one itself: QEMU's exits stay inside KVM, so there is no
baseline to count the same way. The last line is one JSON object: name, value (exits per read), unit, and every
counter per read.

Usage: exits_per_request.py COALESCE DISKIO ASSETS_DIR"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

coalesce, diskio, assets = sys.argv[1:4]
work = tempfile.mkdtemp(prefix="coalesce-exits-")
tools_dir = os.path.join(work, "tools")
os.makedirs(tools_dir)
shutil.copy(diskio, os.path.join(tools_dir, "diskio"))
tools = os.path.join(work, "tools.ext2")
subprocess.run(["mke2fs", "-q", "-t", "ext2", "-d", tools_dir, tools, "8M"], check=True)


def counters(reads):
    img = os.path.join(work, "data.qcow2")
    if os.path.exists(img):
        os.unlink(img)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "128M"], check=True)
    load = f"mkdir -p /t && mount -o ro /dev/vdb /t && /t/diskio /dev/vda randread 4096 {reads} 64"
    out = subprocess.run([coalesce, "run", "--kernel", os.path.join(assets, "vmlinuz"),
                          "--initrd", os.path.join(assets, "initramfs.cpio"), "--memory", "256M", "--stats",
                          "--disk", f"{img},format=qcow2", "--disk", f"{tools},format=raw,readonly=on",
                          "--append", f'console=ttyS0 loglevel=4 coalesce.modules=1 coalesce.cmd="{load}"'],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900).stdout
    if f"count={reads} " not in out:
        sys.exit(f"the {reads}-read run did not finish:\n{out[-2000:]}")
    total = {}
    for line in out.splitlines():
        if re.match(r"vcpu\d+: state=", line):
            for kind, n in re.findall(r" (\w+)=(\d+)", line.split(" emulated:")[0]):
                if kind != "state":
                    total[kind] = total.get(kind, 0) + int(n)
    print(f"{reads} reads: {total}", flush=True)
    return total


few, many = counters(10), counters(2010)
per = {k: round((many.get(k, 0) - few.get(k, 0)) / 2000, 2) for k in many}
exits = round(sum(v for k, v in per.items() if k not in ("injections", "pv_eois", "halts", "halts_polled")), 2)
shutil.rmtree(work, ignore_errors=True)
print(json.dumps({"name": "disk_exits_per_read", "value": exits, "unit": "exits per 4 KiB random read",
                  "per_read": per}))
