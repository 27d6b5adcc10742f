#!/usr/bin/env python3
"""ACPI CPU hotplug with Debian's kernel (docs/HOTPLUG.md), driven from the guest's console and `coalesce ctl`.

CASE local: the guest boots with 1 vCPU of at most 3 (--max-vcpus 3) and sees CPUs 1-2 as possible, not present.
`ctl setvcpus 3` plugs them in: the guest's ACPI scan adds them, its shell onlines them and runs a busy loop
pinned to each, and /proc/stat shows the time each spent. `ctl setvcpus 2` asks for CPU 2 back: the guest
offlines and ejects it, and it is gone from the guest's present CPUs; plugged in again it comes back online.
Wrong counts are refused with the range; the guest powers off with exit 0 at the end.

CASE coalesced: CPUs plugged in on edge hosts. The guest boots with 1 vCPU of 3 and absent vCPU 2 placed on
edge agent A (it waits there, idle). `ctl attach B vcpus=1` leases agent B, moves absent vCPU 1 there and plugs
it in; `ctl setvcpus 3` plugs in vCPU 2 on A. The guest onlines both remote CPUs, each in its edge's NUMA node
(CPU 1 in node 2, a domain kept for edges attached later, through its _PXM), and runs a busy loop on each
(/proc/stat); `setvcpus 1` takes both back (the guest offlines and ejects them), B is detached, and the guest
powers off with exit 0. It prints the attach latency: the lease asked for to the CPU online in the guest.

CASE guest: the VMM's half on several nodes, with the project's cpu_hotplug guest (tests/guests/cpu_hotplug.c),
which drives the hotplug controller itself, fast enough for the nested KVM VM: absent vCPU 2 parked on agent
A, `attach B vcpus=1` plugs vCPU 1 in on B, the guest starts it there (it runs), `setvcpus 3` plugs vCPU 2 in
where it waited since boot, on A, and the guest starts it there too; B is detached: vCPU 1 goes home and, being a
CPU B lent, is given back (the detach returns once the guest parked and ejected it), vCPU 2 stays, and the guest
passes.

Usage: hotplug_test.py COALESCE ASSETS_DIR CASE   (CASE guest: GUESTS_DIR instead of ASSETS_DIR)"""
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from edge_agent_process import EdgeAgent  # noqa: E402
from guest_shell import GuestGone, GuestShell  # noqa: E402
from kvm_required import kvm_problem  # noqa: E402
import test_checks  # noqa: E402
from test_checks import check, wait_for  # noqa: E402

COALESCE, ASSETS, CASE = sys.argv[1:4]
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


def guest_case():
    """The cpu_hotplug guest over home and two agents (ASSETS is the guests' build directory here)."""
    out_path = os.path.join(run_dir, "guest.txt")
    with EdgeAgent(COALESCE) as a, EdgeAgent(COALESCE) as b:
        cmd = [COALESCE, "run", "--name", name, "--kernel", os.path.join(ASSETS, "cpu_hotplug.elf"), "--vcpus", "1",
               "--max-vcpus", "3", "--edge", f"{a.listen}=2", "--append", f"wait_ms={120000 * SLOW} cpu2=1"]
        with open(out_path, "w") as out:
            vm = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            check("the guest waits for CPU 1", wait_for(out_path, "waiting for CPU 1", 60 * SLOW, vm),
                  open(out_path).read())
            rc, reply, err = ctl("attach", b.listen, "vcpus=1")
            check("attach B vcpus=1: absent vCPU 1 moves to B and is plugged in",
                  rc == 0 and "attached as node 2" in reply and "vCPUs 1 plugged in" in reply, reply + err)
            print(f"  {reply.strip()}")
            check("the guest started CPU 1 on B and it ran", wait_for(out_path, "CPU 1 plugged in and ran", 60 * SLOW, vm)
                  and "CPU 1 runs (APIC id 1)" in open(out_path).read(), open(out_path).read())
            rc, status, err = ctl("status")
            check("ctl status: vCPU 1 on node 2, vCPU 2 absent", rc == 0 and re.search(r"node 2 edge \S+: vCPUs 1,", status)
                  and "hotplug: vCPUs 2 absent" in status, status + err)
            # vCPU 2, absent since boot and waiting on A (an edge from the start), plugged in where it waits.
            rc, reply, err = ctl("setvcpus", "3")
            check("setvcpus 3: vCPU 2, waiting on edge A, is plugged in", rc == 0 and "vCPUs 2 plugged in" in reply,
                  reply + err)
            check("the guest started CPU 2 on A and it ran",
                  wait_for(out_path, "CPU 2 plugged in and ran", 60 * SLOW, vm)
                  and "CPU 2 runs (APIC id 2)" in open(out_path).read(), open(out_path).read())
            rc, status, err = ctl("status")
            check("ctl status: vCPU 2 on node 1 (A), vCPU 1 on node 2 (B), none absent",
                  rc == 0 and re.search(r"node 1 edge \S+: vCPUs 2,", status)
                  and re.search(r"node 2 edge \S+: vCPUs 1,", status) and "hotplug: vCPUs none absent" in status,
                  status + err)
            # The CPU B lent goes with B: vCPU 1 moves home and the guest gives it back (offline, ejected).
            rc, reply, err = ctl("detach", b.listen)
            check("detach B: vCPU 1 goes home and, plugged in by the attach, is given back: the guest ejected it",
                  rc == 0 and "detached" in reply and re.search(r"vCPUs 1, which it lent, given back: the guest "
                                                                r"ejected them in [\d.]+ ms", reply),
                  reply + err + open(out_path).read())
            print(f"  {reply.strip()}")
            # The guest's last step was that eject: it checks the controller's bitmaps and ends.
            try:
                vm_rc = vm.wait(60 * SLOW)
            except subprocess.TimeoutExpired:
                vm_rc = None
            check(f"the guest passed: exit 1 (got {vm_rc})", vm_rc == 1, open(out_path).read()[-3000:])
        finally:
            if vm.poll() is None:
                vm.kill()
                vm.wait()
            if test_checks.failures:
                print(f"---- agent A ----\n{a.log_tail()}\n---- agent B ----\n{b.log_tail()}")


if CASE == "guest":
    guest_case()
    test_checks.finish()

agents = []
if CASE == "coalesced":
    agents = [EdgeAgent(COALESCE), EdgeAgent(COALESCE)]
cmd = [COALESCE, "run", "--name", name, "--kernel", os.path.join(ASSETS, "vmlinuz"), "--initrd",
       os.path.join(ASSETS, "initramfs.cpio"), "--vcpus", "1", "--max-vcpus", "3", "--memory", "256M",
       "--append", "console=ttyS0 loglevel=4"]
if CASE == "coalesced":
    cmd += ["--edge", f"{agents[0].listen}=2"]
with open(out_path, "w") as out:
    vm = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
shell = GuestShell(vm, out_path, SLOW)


def guest(command, timeout=60):
    return shell.run(command, timeout)


def cpu_ticks(stat):
    """{cpu: user+nice+system ticks} from /proc/stat text."""
    ticks = {}
    for m in re.finditer(r"^cpu(\d+) (\d+) (\d+) (\d+)", stat or "", re.M):
        ticks[int(m.group(1))] = int(m.group(2)) + int(m.group(3)) + int(m.group(4))
    return ticks


def cpus(path):
    return (guest(f"cat /sys/devices/system/cpu/{path}") or "?").strip()



def console_tail():
    return shell.tail()


def online(cpu_list):
    """Onlines the guest's CPUs `cpu_list`; returns the guest's online CPUs afterwards (its
    /sys/devices/system/cpu/online) and the seconds it took."""
    start = time.time()
    # The guest takes the plug in its ACPI handler; the CPU's sysfs directory appears once the kernel has added the
    # device after that (seen in the nested VM: not yet there 2.4 s after setvcpus returned). Like udev, the shell
    # onlines it when it is there, waiting at most 300 s.
    cmd = "; ".join(f"i=0; while [ ! -e /sys/devices/system/cpu/cpu{c}/online ] && [ $i -lt 300 ]; do sleep 1; "
                    f"i=$((i+1)); done; echo 1 > /sys/devices/system/cpu/cpu{c}/online" for c in cpu_list)
    text = guest(f"{cmd}; cat /sys/devices/system/cpu/online", timeout=600)
    lines = (text or "").strip().splitlines()
    return (lines[-1] if lines else "?"), time.time() - start


def busy_ticks(cpu_list, seconds=3):
    """Runs a busy loop pinned to each CPU of `cpu_list` for `seconds`; {cpu: /proc/stat ticks it gained}."""
    before = cpu_ticks(guest("cat /proc/stat"))
    loops = " ".join(str(c) for c in cpu_list)
    guest(f"for c in {loops}; do taskset -c $c sh -c 'e=$(($(date +%s)+{seconds})); "
          "while [ $(date +%s) -lt $e ]; do :; done' & done; wait", timeout=300)
    after = cpu_ticks(guest("cat /proc/stat"))
    return {c: after.get(c, 0) - before.get(c, 0) for c in cpu_list}


def boot():
    ready = shell.wait_ready(900 if NESTED else 120)
    check("the guest reached its shell", ready, console_tail())
    possible, present = cpus("possible"), cpus("present")
    check("the guest sees CPUs 0-2 as possible, CPU 0 present", possible == "0-2" and present == "0",
          f"possible {possible!r}, present {present!r}")
    rc, status, err = ctl("status")
    check("ctl status: 1 vCPU running, 1-2 absent, no guest write ignored by the controller",
          rc == 0 and "running, 1 vCPUs" in status
          and "hotplug: vCPUs 1-2 absent, at most 3 (setvcpus); guest writes ignored: 0" in status, status + err)


def power_off():
    rc, _, err = ctl("shutdown")
    check("ctl shutdown: the power button is pressed", rc == 0, err)
    try:
        vm_rc = vm.wait(300 if NESTED else 60)
    except subprocess.TimeoutExpired:
        vm_rc = None
    check(f"the guest powered off: exit 0 (got {vm_rc})", vm_rc == 0, console_tail())


def local_case():
    for bad in ("4", "0", "x"):
        rc, _, err = ctl("setvcpus", bad)
        check(f"setvcpus {bad}: refused with the range", rc == 2 and "between 1 and 3" in err, err)
    rc, reply, err = ctl("setvcpus", "3")
    check("setvcpus 3: vCPUs 1-2 plugged in, the guest took them", rc == 0 and "vCPUs 1-2 plugged in" in reply,
          reply + err)
    print(f"  {reply.strip()}")
    check("the guest's present CPUs: 0-2", cpus("present") == "0-2", console_tail())
    now_online, took = online([1, 2])
    check(f"the guest onlined them in {took:.1f} s: CPUs 0-2 online", now_online == "0-2", console_tail())
    busy = busy_ticks([1, 2])
    check(f"a busy loop pinned to each plugged CPU ran there (/proc/stat ticks: {busy})",
          all(busy[c] >= 50 for c in (1, 2)))

    rc, reply, err = ctl("setvcpus", "2")
    check("setvcpus 2: the guest offlined and ejected vCPU 2", rc == 0 and "vCPUs 2 unplugged" in reply, reply + err)
    print(f"  {reply.strip()}")
    check("the guest's present CPUs: 0-1", cpus("present") == "0-1")
    check("its online CPUs: 0-1", cpus("online") == "0-1")
    rc, status, err = ctl("status")
    check("ctl status: 2 vCPUs, 2 absent; Linux's scan, acknowledgements and eject wrote nothing the controller "
          "ignored", rc == 0 and "running, 2 vCPUs" in status
          and "hotplug: vCPUs 2 absent" in status and "guest writes ignored: 0" in status, status + err)

    rc, reply, err = ctl("setvcpus", "3")
    check("setvcpus 3 again: vCPU 2 comes back", rc == 0 and "vCPUs 2 plugged in" in reply, reply + err)
    now_online, _ = online([2])
    check("the guest onlined it again: CPUs 0-2 online", now_online == "0-2", console_tail())
    rc, reply, err = ctl("setvcpus", "3")
    check("setvcpus 3 once more: nothing to do", rc == 0 and "3 vCPUs present already" in reply, reply + err)


def coalesced_case():
    a, b = agents
    start = time.time()
    rc, reply, err = ctl("attach", b.listen, "vcpus=1")
    check("attach B vcpus=1: absent vCPU 1 moves to B and is plugged in",
          rc == 0 and "attached as node 2" in reply and "vCPUs 1 plugged in" in reply, reply + err + b.log_tail())
    print(f"  {reply.strip()}")
    now_online, took = online([1])
    attach_latency = time.time() - start
    check(f"the guest onlined CPU 1 on edge B: {took:.1f} s to online, {attach_latency:.1f} s from the attach",
          now_online == "0-1", console_tail())
    rc, reply, err = ctl("setvcpus", "3")
    check("setvcpus 3: vCPU 2, waiting on edge A, is plugged in", rc == 0 and "vCPUs 2 plugged in" in reply,
          reply + err)
    now_online, took = online([2])
    check(f"the guest onlined CPU 2 on edge A in {took:.1f} s: CPUs 0-2 online", now_online == "0-2", console_tail())
    # Each in its edge's guest NUMA node: CPU 2 in A's (node 1, from the boot SRAT), CPU 1, plugged in for an
    # edge attached later, in the first domain kept for such edges (node 2, its _PXM).
    nodes = {n: (guest(f"cat /sys/devices/system/node/node{n}/cpulist") or "?").strip().splitlines()[-1:]
             for n in (1, 2)}
    check(f"CPU 2 is in guest NUMA node 1 (edge A), CPU 1 in node 2 (edge B, attached later): {nodes}",
          nodes == {1: ["2"], 2: ["1"]}, console_tail())
    rc, status, err = ctl("status")
    check("ctl status: vCPU 2 on A, vCPU 1 on B, none absent",
          rc == 0 and re.search(r"node 1 edge \S+: vCPUs 2,", status) and re.search(r"node 2 edge \S+: vCPUs 1,", status)
          and "hotplug: vCPUs none absent" in status, status + err)
    busy = busy_ticks([1, 2])
    check(f"a busy loop pinned to each edge CPU ran there (/proc/stat ticks: {busy})",
          all(busy[c] >= 20 for c in (1, 2)), console_tail())
    rc, reply, err = ctl("setvcpus", "1")
    check("setvcpus 1: the guest offlined and ejected both edge CPUs", rc == 0 and "vCPUs 1-2 unplugged" in reply,
          reply + err + console_tail())
    print(f"  {reply.strip()}")
    check("the guest's present CPUs: 0", cpus("present") == "0", console_tail())
    rc, reply, err = ctl("detach", b.listen)
    check("detach B: its (absent) vCPU goes home", rc == 0 and "detached" in reply, reply + err)


try:
    boot()
    if CASE == "local":
        local_case()
    else:
        coalesced_case()
    power_off()
except GuestGone as gone:
    check("the VMM ran to the end of the test", False, str(gone))
finally:
    if vm.poll() is None:
        vm.kill()
        vm.wait()
    for agent in agents:
        if test_checks.failures:
            print(f"---- agent {agent.listen} ----\n{agent.log_tail()}")
        agent.stop()
test_checks.finish()
