#!/usr/bin/env python3
"""ACPI CPU hotplug with Debian's kernel (docs/HOTPLUG.md), driven from the guest's console and `coalesce ctl`.

The guest boots with 1 vCPU of at most 3 (--max-vcpus 3) and sees CPUs 1-2 as possible, not present.
`ctl setvcpus 3` plugs them in: the guest's ACPI scan adds them, its shell onlines them and runs a busy loop
pinned to each, and /proc/stat shows the time each spent. `ctl setvcpus 2` asks for CPU 2 back: the guest
offlines and ejects it, and it is gone from the guest's present CPUs; plugged in again it comes back online.
Wrong counts are refused with the range; the guest powers off with exit 0 at the end.

Usage: hotplug_test.py COALESCE ASSETS_DIR"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kvm_required import kvm_problem  # noqa: E402
import test_checks  # noqa: E402
from test_checks import check, wait_for  # noqa: E402

COALESCE, ASSETS = sys.argv[1:3]
NESTED = os.environ.get("COALESCE_NESTED_KVM") == "1"
SLOW = 5 if NESTED else 1  # the nested VM runs the guest under TCG: everything takes longer

problem = kvm_problem()
if problem:
    print(f"FAIL: {problem}")
    sys.exit(1)
run_dir = tempfile.mkdtemp(prefix="coalesce-hotplug-")
os.environ["COALESCE_RUN_DIR"] = run_dir
name = f"hotplug-{os.getpid()}"
out_path = os.path.join(run_dir, "console.txt")


def ctl(*args):
    return test_checks.ctl(COALESCE, "--vm", name, *args)


cmd = [COALESCE, "run", "--name", name, "--kernel", os.path.join(ASSETS, "vmlinuz"), "--initrd",
       os.path.join(ASSETS, "initramfs.cpio"), "--vcpus", "1", "--max-vcpus", "3", "--memory", "256M",
       "--append", "console=ttyS0 loglevel=4"]
with open(out_path, "w") as out:
    vm = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
steps = 0


def guest(command, timeout=60):
    """Runs `command` in the guest's shell; returns what it printed (None on timeout). The end marker is
    computed by the shell, so the echo of the command line itself never matches it."""
    global steps
    steps += 1
    mark = 1000 + steps
    start = os.path.getsize(out_path)
    vm.stdin.write(f"{command}; echo @@$(({mark - 1}+1))@@\n".encode())
    vm.stdin.flush()
    if not wait_for(out_path, rf"@@{mark}@@", timeout * SLOW, vm):
        return None
    with open(out_path, errors="replace") as f:
        f.seek(start)
        text = f.read()
    body = text[text.find("\n") + 1:text.rfind(f"@@{mark}@@")]  # after the echoed command line
    return body.replace("\r", "")


def cpu_ticks(stat):
    """{cpu: user+nice+system ticks} from /proc/stat text."""
    ticks = {}
    for m in re.finditer(r"^cpu(\d+) (\d+) (\d+) (\d+)", stat or "", re.M):
        ticks[int(m.group(1))] = int(m.group(2)) + int(m.group(3)) + int(m.group(4))
    return ticks


def cpus(path):
    return (guest(f"cat /sys/devices/system/cpu/{path}") or "?").strip()


try:
    ready = wait_for(out_path, r"no coalesce.cmd, starting a shell", 900 if NESTED else 120, vm)
    check("the guest reached its shell", ready, open(out_path).read()[-3000:])
    check("the guest sees CPUs 0-2 as possible, CPU 0 present", cpus("possible") == "0-2" and cpus("present") == "0")
    rc, status, err = ctl("status")
    check("ctl status: 1 vCPU running, 1-2 absent", rc == 0 and "running, 1 vCPUs" in status
          and "hotplug: vCPUs 1-2 absent, at most 3" in status, status + err)
    for bad in ("4", "0", "x"):
        rc, _, err = ctl("setvcpus", bad)
        check(f"setvcpus {bad}: refused with the range", rc == 2 and "between 1 and 3" in err, err)

    rc, reply, err = ctl("setvcpus", "3")
    check("setvcpus 3: vCPUs 1-2 plugged in, the guest took them", rc == 0 and "vCPUs 1-2 plugged in" in reply,
          reply + err)
    print(f"  {reply.strip()}")
    check("the guest's present CPUs: 0-2", cpus("present") == "0-2", open(out_path).read()[-3000:])
    online = guest("echo 1 > /sys/devices/system/cpu/cpu1/online; echo 1 > /sys/devices/system/cpu/cpu2/online; "
                   "cat /sys/devices/system/cpu/online", timeout=120)
    check("the guest onlined them: CPUs 0-2 online", online is not None and online.strip().endswith("0-2"),
          open(out_path).read()[-3000:])
    before = cpu_ticks(guest("cat /proc/stat"))
    guest("for c in 1 2; do taskset -c $c sh -c 'e=$(($(date +%s)+3)); while [ $(date +%s) -lt $e ]; do :; done' & "
          "done; wait", timeout=120)
    after = cpu_ticks(guest("cat /proc/stat"))
    busy = {c: after.get(c, 0) - before.get(c, 0) for c in (1, 2)}
    check(f"a busy loop pinned to each plugged CPU ran there (/proc/stat ticks: {busy})",
          all(busy[c] >= 50 for c in (1, 2)), f"before {before}\nafter {after}")

    rc, reply, err = ctl("setvcpus", "2")
    check("setvcpus 2: the guest offlined and ejected vCPU 2", rc == 0 and "vCPUs 2 unplugged" in reply, reply + err)
    print(f"  {reply.strip()}")
    check("the guest's present CPUs: 0-1", cpus("present") == "0-1")
    check("its online CPUs: 0-1", cpus("online") == "0-1")
    rc, status, err = ctl("status")
    check("ctl status: 2 vCPUs, 2 absent", rc == 0 and "running, 2 vCPUs" in status
          and "hotplug: vCPUs 2 absent" in status, status + err)

    rc, reply, err = ctl("setvcpus", "3")
    check("setvcpus 3 again: vCPU 2 comes back", rc == 0 and "vCPUs 2 plugged in" in reply, reply + err)
    online = guest("echo 1 > /sys/devices/system/cpu/cpu2/online; cat /sys/devices/system/cpu/online", timeout=120)
    check("the guest onlined it again: CPUs 0-2 online", online is not None and online.strip().endswith("0-2"),
          open(out_path).read()[-3000:])
    rc, reply, err = ctl("setvcpus", "3")
    check("setvcpus 3 once more: nothing to do", rc == 0 and "3 vCPUs present already" in reply, reply + err)

    rc, reply, err = ctl("shutdown")
    check("ctl shutdown: the power button is pressed", rc == 0, err)
    try:
        vm_rc = vm.wait(300 if NESTED else 60)
    except subprocess.TimeoutExpired:
        vm_rc = None
    check(f"the guest powered off: exit 0 (got {vm_rc})", vm_rc == 0, open(out_path).read()[-3000:])
finally:
    if vm.poll() is None:
        vm.kill()
        vm.wait()
test_checks.finish()
