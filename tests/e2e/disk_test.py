#!/usr/bin/env python3
"""Virtio disks served by qemu-storage-daemon, seen by Debian's cloud kernel under coalesce (docs/DEVICES.md).
The references are independent of Coalesce: the image files read on the host, and `qemu-img check`.

Modes:
  qcow2       a fresh qcow2: the guest makes an ext2 filesystem, writes 1 MiB of random data and powers off; a
              second boot reads it back (same SHA-256); qemu-img check finds no errors.
  raw_ro_two  two disks: vda a read-only raw image the host filled (the guest reads the host's bytes; blockdev
              says read-only; a write fails; the file is unchanged), vdb a writable raw image on shadow rings (a
              string the guest writes at 1 MiB is in the file at 1 MiB).
  errors      a missing image, format=qcow2 on a raw file, an image another exporter writes: each exit status 2
              naming the problem, before the guest runs.
  coalesced   as qcow2, but the first boot has vCPU 1 on an edge agent (a separate process) and the writing
              runs there (taskset): its buffers are edge pages the home must pull in for the storage daemon.

Usage: disk_test.py COALESCE ASSETS_DIR MODE [--timeout S]"""
import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("assets")
ap.add_argument("mode", choices=["qcow2", "raw_ro_two", "errors", "coalesced"])
ap.add_argument("--timeout", type=float, default=600)
a = ap.parse_args()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edge_agent_process import EdgeAgent  # noqa: E402
from timed_run import run_timed  # noqa: E402

kernel, initrd = os.path.join(a.assets, "vmlinuz"), os.path.join(a.assets, "initramfs.cpio")
for f in (kernel, initrd):
    if not os.path.exists(f):
        print(f"FAIL: {f} is missing (run scripts/guest-assets.sh)")
        sys.exit(1)
failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail and not ok else ''}", flush=True)
    if not ok:
        failures.append(name)


def boot(disks, guest_cmd, extra=()):
    cmd = [a.coalesce, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M", *extra]
    for d in disks:
        cmd += ["--disk", d]
    cmd += ["--append", f'console=ttyS0 loglevel=4 coalesce.modules=1 coalesce.cmd="{guest_cmd}"']
    print("running:", " ".join(cmd), flush=True)
    rc, out, _ = run_timed(cmd, a.timeout, echo=True)
    if rc is None:
        print(f"FAIL: no power-off within {a.timeout:.0f}s")
        sys.exit(1)
    return rc, out


def grab(out, key):
    m = re.search(rf"^{key}=(\S+)", out, re.M)
    return m.group(1) if m else None


work = tempfile.mkdtemp(prefix="coalesce-disk-test-")

if a.mode in ("qcow2", "coalesced"):
    image = os.path.join(work, "fs.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", image, "64M"], check=True)
    write = ("mkdir -p /mnt && mke2fs -q /dev/vda && mount /dev/vda /mnt && "
             "head -c 1048576 /dev/urandom > /mnt/data && echo WROTE=$(sha256sum /mnt/data) && "
             "umount /mnt && echo UMOUNT=$?")
    if a.mode == "qcow2":
        rc, out = boot([image], write)
    else:
        agent = EdgeAgent(a.coalesce, capacity="vcpus=2,memory=1G")
        try:
            rc, out = boot([image], f"echo CPU1=$(taskset -c 1 cat /proc/self/stat | cut -d' ' -f39); "
                                    f"taskset -c 1 sh -c '{write}'",
                           extra=["--vcpus", "2", "--edge", f"{agent.listen}=1"])
        finally:
            agent.stop()
        check("the writer ran on vCPU 1 (the edge's)", grab(out, "CPU1") == "1", str(grab(out, "CPU1")))
    check("first boot powers off (exit 0)", rc == 0, f"rc={rc}")
    wrote = grab(out, "WROTE")
    check("the guest wrote the file and unmounted", wrote is not None and grab(out, "UMOUNT") == "0")
    rc, out = boot([f"{image},format=qcow2"], "mkdir -p /mnt && mount -o ro /dev/vda /mnt && "
                                              "echo READ=$(sha256sum /mnt/data) && "
                                              "echo SEGSIZE=$(cat /sys/block/vda/queue/max_segment_size)")
    check("second boot powers off (exit 0)", rc == 0, f"rc={rc}")
    read = grab(out, "READ")
    check("the second boot reads the same bytes", wrote is not None and read == wrote, f"{wrote} vs {read}")
    # qemu-storage-daemon's size_max of 0 means no limit, not one page per segment (docs/DISKS.md).
    seg = grab(out, "SEGSIZE")
    check("the guest's segments are not limited to one page", seg is not None and seg.isdigit() and int(seg) > 4096,
          str(seg))
    chk = subprocess.run(["qemu-img", "check", image], capture_output=True, text=True)
    print(chk.stdout.strip())
    check("qemu-img check finds no errors", chk.returncode == 0 and "No errors" in chk.stdout, chk.stderr)

elif a.mode == "raw_ro_two":
    ro = os.path.join(work, "ro.raw")
    rw = os.path.join(work, "rw.raw")
    content = hashlib.sha256(b"seed").digest() * ((4 << 20) // 32)  # 4 MiB, host-made
    with open(ro, "wb") as f:
        f.write(content)
    with open(rw, "wb") as f:
        f.truncate(8 << 20)
    pattern = "COALESCE-DISK-PATTERN-7f3a"
    rc, out = boot([f"{ro},format=raw,readonly=on", f"{rw},format=raw,shadow=on"],
                   "echo RO=$(blockdev --getro /dev/vda),$(blockdev --getro /dev/vdb); "
                   "echo HEAD=$(head -c 65536 /dev/vda | sha256sum); "
                   "dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null; echo RO_WRITE=$?; "
                   f"printf {pattern} | dd of=/dev/vdb bs=512 seek=2048 conv=notrunc,fsync 2>/dev/null; "
                   "echo RW_WRITE=$?")
    check("the guest powers off (exit 0)", rc == 0, f"rc={rc}")
    check("vda is read-only and vdb writable in the guest", grab(out, "RO") == "1,0", str(grab(out, "RO")))
    want = hashlib.sha256(content[:65536]).hexdigest()
    check("the guest reads the host's bytes from vda", grab(out, "HEAD") == want, f"{grab(out, 'HEAD')} vs {want}")
    check("a write to the read-only disk fails in the guest", grab(out, "RO_WRITE") not in (None, "0"))
    with open(ro, "rb") as f:
        check("the read-only image is unchanged", f.read() == content)
    check("the write to vdb succeeded in the guest", grab(out, "RW_WRITE") == "0")
    with open(rw, "rb") as f:
        f.seek(1 << 20)
        got = f.read(len(pattern)).decode(errors="replace")
    check("the host finds the guest's string at 1 MiB of vdb's file", got == pattern, repr(got))

else:
    raw = os.path.join(work, "plain.raw")
    with open(raw, "wb") as f:
        f.truncate(1 << 20)

    def refused(name, disk, needle, extra=()):
        cmd = [a.coalesce, "run", "--kernel", kernel, "--initrd", initrd, "--disk", disk, *extra]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        check(f"{name}: exit 2 and '{needle}'", p.returncode == 2 and needle in p.stderr,
              f"rc={p.returncode} stderr={p.stderr.strip()[-300:]}")

    refused("missing image", os.path.join(work, "absent.qcow2"), "absent.qcow2")
    refused("format=qcow2 on a raw file", f"{raw},format=qcow2", "not a qcow2 image")
    sock = os.path.join(work, "other.sock")
    other = subprocess.Popen(["qemu-storage-daemon", "--blockdev",
                              f"driver=file,node-name=f,filename={raw}", "--export",
                              f"type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path={sock},writable=on"])
    deadline = time.monotonic() + 30
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    refused("an image another exporter writes", f"{raw},format=raw", "locked")
    other.terminate()
    other.wait()

subprocess.run(["rm", "-rf", work])
print("PASS" if not failures else f"FAIL: {', '.join(failures)}")
sys.exit(1 if failures else 0)
