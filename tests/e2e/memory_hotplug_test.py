#!/usr/bin/env python3
"""ACPI memory hotplug with Debian's kernel (docs/HOTPLUG.md, "Memory"), driven from the guest's console and
`coalesce ctl`.

The guest boots with 256M of RAM and may grow to 768M (--max-memory: four 128M slots at 4 GiB, absent at boot;
memhp_default_state=online_movable so Linux onlines what is plugged in, movable so it can give it back).
`ctl setmemory 512M` plugs two slots in: the guest's ACPI scan adds them, MemTotal grows by exactly 256M, and a
288M file of random bytes in a tmpfs (more than the guest's whole boot RAM) reads back with the checksum it was
written with. `setmemory 256M` after the file is gone: the guest offlines and ejects both slots and MemTotal is
what it was at boot; `setmemory 384M` plugs slot 0 in again. Wrong sizes are refused with the range, the
controller ignored no guest write, and the guest powers off with exit 0.

CASE edge: a memory edge lends RAM and the guest grows by it. The guest boots with 256M of at most 512M, a home
allowance of 224M and memory edge A lending 64M; the guest's NUMA node 1 is A's share of boot RAM (the 32M above
home's 224M, no CPUs, the measured distance); nodes 2-3 are possible (kept for edges attached later).
`ctl attach B memory=256M` leases agent B and plugs two slots in, in guest NUMA node 2 (256M, no CPUs, A's
distance): MemTotal grows by 256M and a 288M file written to a tmpfs that prefers node 2 (most of it there;
spilled to A and B beyond home's 224M) reads back with its checksum. `ctl detach B`: B's pages come home, then the two slots B lent are given back (the guest
offlines and ejects them), MemTotal is as at boot and node 2 holds nothing; the guest powers off with exit 0.

Usage: memory_hotplug_test.py COALESCE ASSETS_DIR [local|edge]"""
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
from test_checks import check  # noqa: E402

COALESCE, ASSETS = sys.argv[1:3]
CASE = sys.argv[3] if len(sys.argv) > 3 else "local"
NESTED = os.environ.get("COALESCE_NESTED_KVM") == "1"
SLOW = 5 if NESTED else 1  # the nested VM runs the guest under TCG: everything takes longer

problem = kvm_problem()
if problem:
    print(f"FAIL: {problem}")
    sys.exit(1)
run_dir = tempfile.mkdtemp(prefix="coalesce-memhp-")
os.environ["COALESCE_RUN_DIR"] = run_dir
name = f"memhp-{os.getpid()}"
out_path = os.path.join(run_dir, "console.txt")
MIB = 1024  # kB in /proc/meminfo


def ctl(*args):
    return test_checks.ctl(COALESCE, "--vm", name, *args)


agents = [EdgeAgent(COALESCE), EdgeAgent(COALESCE)] if CASE == "edge" else []
cmd = [COALESCE, "run", "--name", name, "--kernel", os.path.join(ASSETS, "vmlinuz"), "--initrd",
       os.path.join(ASSETS, "initramfs.cpio"), "--vcpus", "1", "--memory", "256M",
       "--max-memory", "512M" if CASE == "edge" else "768M",
       "--append", "console=ttyS0 loglevel=4 memhp_default_state=online_movable"]
if CASE == "edge":
    cmd += ["--home-memory", "224M", "--memory-edge", f"{agents[0].listen}=64M"]
with open(out_path, "w") as out:
    vm = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
shell = GuestShell(vm, out_path, SLOW)


def guest(command, timeout=60):
    return shell.run(command, timeout)


def mem_total():
    """The guest's MemTotal in kB (None if it did not answer)."""
    m = re.search(r"MemTotal:\s+(\d+) kB", guest("grep MemTotal /proc/meminfo") or "")
    return int(m.group(1)) if m else None


def mem_total_becomes(want, seconds=30):
    """Polls MemTotal until it is `want` kB: Linux onlines added blocks right after its ACPI scan, and offlines
    before it ejects. Returns the last value read."""
    end = time.time() + seconds * SLOW
    value = mem_total()
    while value != want and time.time() < end:
        time.sleep(0.5)
        value = mem_total()
    return value


def memory_blocks():
    """The guest's memory blocks and their state: {block number: 'online'|'offline'}."""
    text = guest("for b in /sys/devices/system/memory/memory*; do echo ${b##*memory} $(cat $b/state); done") or ""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d+) (\w+)", text, re.M)}


def boot():
    """Waits for the guest's shell; returns its MemTotal at boot (kB)."""
    check("the guest reached its shell", shell.wait_ready(900 if NESTED else 120), shell.tail())
    boot_total = mem_total()
    check(f"the guest's RAM at boot: MemTotal {boot_total} kB, under 256M", boot_total and boot_total < 256 * MIB)
    boot_blocks = memory_blocks()
    # Block n covers [n * 128M, (n + 1) * 128M): the slots at 4 GiB would be blocks 32 and up.
    check(f"no memory block at 4 GiB or above yet: {sorted(boot_blocks)}", boot_blocks and max(boot_blocks) < 32)
    return boot_total


def write_and_check(megabytes, node=None):
    """Writes `megabytes` of random bytes to a tmpfs and reads them back: their checksum going in and coming out.
    With `node`, the tmpfs prefers that NUMA node's memory (mpol=prefer:NODE); returns the MiB of it the file
    took there (the node's Shmem while the file exists)."""
    mpol = f",mpol=prefer:{node}" if node is not None else ""
    on_node = (f" && sed -n 's/.*Shmem: *\\([0-9]*\\) kB/shmem \\1/p' /sys/devices/system/node/node{node}/meminfo"
               if node is not None else "")
    text = guest(f"mkdir -p /mnt && mount -t tmpfs -o size=400m{mpol} tmpfs /mnt && "
                 f"dd if=/dev/urandom bs=1M count={megabytes} 2>/dev/null | tee /mnt/f | md5sum && md5sum /mnt/f"
                 + on_node, timeout=600) or ""
    sums = re.findall(r"^([0-9a-f]{32}) ", text, re.M)
    check(f"{megabytes}M of random bytes written to a tmpfs read back with the same checksum: {sums}",
          len(sums) == 2 and sums[0] == sums[1], text + shell.tail())
    guest("rm /mnt/f && umount /mnt")
    m = re.search(r"^shmem (\d+)", text, re.M)
    return int(m.group(1)) // 1024 if m else None


def power_off():
    rc, _, err = ctl("shutdown")
    check("ctl shutdown: the power button is pressed", rc == 0, err)
    try:
        vm_rc = vm.wait(300 if NESTED else 60)
    except subprocess.TimeoutExpired:
        vm_rc = None
    check(f"the guest powered off: exit 0 (got {vm_rc})", vm_rc == 0, shell.tail())


def local_case():
    boot_total = boot()
    rc, status, err = ctl("status")
    check("ctl status: nothing plugged in, 512M more possible",
          rc == 0 and "memory hotplug: 0 plugged in (slots none) of 512M more possible, guest RAM 256M" in status,
          status + err)

    for bad in ("128M", "1G", "300M", "x"):
        rc, _, err = ctl("setmemory", bad)
        check(f"setmemory {bad}: refused with the range", rc == 2 and "from 256M to 768M in steps of 128M" in err, err)

    rc, reply, err = ctl("setmemory", "512M")
    check("setmemory 512M: slots 0-1 plugged in at 4 GiB, the guest took them",
          rc == 0 and "memory slots 0-1 (256M at 0x100000000) plugged in" in reply and "guest RAM 512M" in reply,
          reply + err)
    print(f"  {reply.strip()}")
    grown = mem_total_becomes(boot_total + 256 * MIB)
    check(f"MemTotal grew by exactly 256M: {boot_total} -> {grown} kB", grown == boot_total + 256 * MIB, shell.tail())
    blocks = memory_blocks()
    check(f"blocks 32 and 33 (4 GiB + 0, + 128M) online: {blocks}",
          blocks.get(32) == "online" and blocks.get(33) == "online")

    # More than the whole boot RAM, so it can only live (at least partly) in the plugged-in memory. (Removed
    # before the unplug: Linux would retry migrating it out of the movable blocks for as long as it cannot,
    # holding its ACPI hotplug worker.)
    write_and_check(288)
    rc, reply, err = ctl("setmemory", "256M")
    check("setmemory 256M once the file is gone: the guest offlined and ejected both slots",
          rc == 0 and "memory slots 0-1 (256M at 0x100000000) unplugged" in reply and "guest RAM 256M" in reply,
          reply + err)
    print(f"  {reply.strip()}")
    shrunk = mem_total_becomes(boot_total)
    check(f"MemTotal is the boot value again: {shrunk} kB", shrunk == boot_total, shell.tail())
    node2 = numa_nodes().get(2)
    check(f"node 2 holds no memory any more: {node2}", node2 is None or node2[1] == 0)
    check("blocks 32 and 33 are gone", not {32, 33} & set(memory_blocks()))

    rc, reply, err = ctl("setmemory", "384M")
    check("setmemory 384M: slot 0 comes back", rc == 0 and "memory slots 0 (128M at 0x100000000) plugged in" in reply,
          reply + err)
    again = mem_total_becomes(boot_total + 128 * MIB)
    check(f"MemTotal grew by 128M: {again} kB", again == boot_total + 128 * MIB, shell.tail())
    rc, reply, err = ctl("setmemory", "384M")
    check("setmemory 384M once more: nothing to do", rc == 0 and "has 384M of RAM already" in reply, reply + err)
    rc, status, err = ctl("status")
    check("ctl status: slot 0 plugged in, 384M of RAM, no guest write ignored",
          rc == 0 and "memory hotplug: 128M plugged in (slots 0) of 512M more possible, guest RAM 384M" in status
          and "guest writes ignored: 0" in status and ", 384 MiB of RAM" in status, status + err)


def numa_nodes():
    """The guest's NUMA nodes: {node: (cpulist, MemTotal kB, distances)}."""
    text = guest("for n in /sys/devices/system/node/node[0-9]*; do echo ${n##*node} cpus=[$(cat $n/cpulist)] "
                 "$(sed -n 's/.*MemTotal: *\\([0-9]*\\) kB/\\1/p' $n/meminfo) $(cat $n/distance); done") or ""
    return {int(m.group(1)): (m.group(2), int(m.group(3)), m.group(4).split())
            for m in re.finditer(r"^(\d+) cpus=\[([^\]]*)\] (\d+) ([\d ]+)$", text, re.M)}


def edge_case():
    b = agents[1]
    boot_total = boot()
    # Memory edge A's guest NUMA node: the 32M of boot RAM above home's allowance of 224M, no CPUs, at the
    # distance of its measured round trip.
    printed = re.search(r"guest NUMA node 1 = edge \S+ \(memory 32M\): round trip ([\d.]+) ms, distance (\d+)",
                        shell.tail(100000))
    check("coalesce run names memory edge A as guest NUMA node 1 with 32M", printed, shell.tail())
    nodes = numa_nodes()
    node1 = nodes.get(1)
    check(f"the guest sees nodes 0 and 1: {nodes}", sorted(nodes) == [0, 1], shell.tail())
    check(f"node 1 has no CPUs and 28-32M of RAM (the firmware's reservations aside): {node1}",
          node1 and node1[0] == "" and 28 * MIB <= node1[1] <= 32 * MIB)
    check(f"node 0 has CPU 0 and the rest: {nodes.get(0)}", nodes.get(0) and nodes[0][0] == "0"
          and nodes[0][1] + (node1[1] if node1 else 0) <= boot_total + 1024)
    check(f"node 1's distance is the one printed ({printed.group(2) if printed else None})",
          printed and node1 and node1[2] == [printed.group(2), "10"] and nodes[0][2] == ["10", printed.group(2)])
    # The guest may gain memory: two more domains are kept for edges attached later (possible, not online).
    possible = (guest("cat /sys/devices/system/node/possible") or "").strip().splitlines()
    check(f"the guest's possible NUMA nodes are 0-3 (two kept for edges attached later): {possible[-1:]}",
          possible[-1:] == ["0-3"], shell.tail())
    rc, reply, err = ctl("attach", b.listen, "memory=256M")
    joined = re.search(r"the guest grew by it: memory slots 0-1 plugged in \(guest NUMA node 2, distance (\d+)",
                       reply)
    check("attach B memory=256M: B lends 256M and the guest grows by it (slots 0-1) in guest NUMA node 2",
          rc == 0 and "memory edge" in reply and joined and "guest RAM 512M, home keeps at most 224M" in reply,
          reply + err + b.log_tail())
    print(f"  {reply.strip()}")
    grown = mem_total_becomes(boot_total + 256 * MIB)
    check(f"MemTotal grew by exactly 256M: {boot_total} -> {grown} kB", grown == boot_total + 256 * MIB, shell.tail())
    # Node 2 is B's: the 256M of the two slots, no CPUs, at the distance of A (the farthest edge at boot).
    nodes = numa_nodes()
    node2 = nodes.get(2)
    check(f"node 2 holds B's 256M and no CPUs, at the distance the attach named: {node2}",
          node2 and node2[0] == "" and node2[1] == 256 * MIB and joined
          and node2[2][0] == joined.group(1) and node2[2][2] == "10" and printed and joined.group(1) == printed.group(2),
          f"{nodes}\n{shell.tail()}")
    check(f"node 0 did not grow: {nodes.get(0)}", nodes.get(0) and nodes[0][1] <= boot_total)
    # 288M in a guest whose home keeps 224M, in a tmpfs that prefers node 2, B's memory: as a guest places a job's
    # data on memory lent to it. (With the default policy the guest fills its normal memory on nodes 0 and 1 first,
    # the hot-plugged node 2 being movable memory only, and a tmpfs that large leaves its kernel none: it ran
    # out of memory and panicked.) The spill puts home's oldest pages on A and B, node 2's on B first.
    on_node2 = write_and_check(288, node=2)
    check(f"node 2 took the file's first 240M or more: {on_node2} MiB", on_node2 is not None and on_node2 >= 240)
    rc, status, err = ctl("status")
    spilled = re.search(r"pages spilled (\d+)", status)
    check(f"pages spilled to the memory edges: {spilled.group(1) if spilled else None}",
          rc == 0 and spilled and int(spilled.group(1)) > 0 and "memory hotplug: 256M plugged in (slots 0-1)" in status,
          status + err)
    rc, reply, err = test_checks.ctl(COALESCE, "--timeout", "600", "--vm", name, "detach", b.listen, timeout=620)
    check("detach B: its pages come home, then the slots it lent are given back (the guest ejected them)",
          rc == 0 and "left" in reply and re.search(r"memory slots 0-1 \(256M at 0x100000000\), which it lent, given "
                                                    r"back: the guest ejected it in [\d.]+ ms", reply),
          reply + err + shell.tail())
    print(f"  {reply.strip()}")
    shrunk = mem_total_becomes(boot_total)
    check(f"MemTotal is the boot value again: {shrunk} kB", shrunk == boot_total, shell.tail())
    node2 = numa_nodes().get(2)
    check(f"node 2 holds no memory any more: {node2}", node2 is None or node2[1] == 0)
    rc, status, err = ctl("status")
    check("ctl status: nothing plugged in, 256M of RAM", rc == 0 and "memory hotplug: 0 plugged in" in status
          and ", 256 MiB of RAM" in status, status + err)


try:
    edge_case() if CASE == "edge" else local_case()
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
