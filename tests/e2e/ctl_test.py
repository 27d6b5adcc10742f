#!/usr/bin/env python3
"""`coalesce ctl` against running VMs (docs/COALESCENCE.md, "Controlling a running VM").

CASE linux: Debian's kernel on one node, named with --name, waits at its shell; `ctl status` shows the node
  and its vCPUs; a second VM of the same name is refused; with a busy loop running in the guest, `ctl suspend`
  pauses it (status says paused, the vCPU threads use no CPU time, against the same window running) and `ctl
  resume` runs it again (the shell answers); `ctl shutdown` presses the ACPI power button and the guest powers off
  (exit 0); the socket is gone afterwards and `ctl` says so.
CASE coalesced: the spinlock guest over home and an edge agent; `ctl status` while it runs shows each node's
  vCPUs, the guest pages each owns (the edge owns some: the DSM moved them) and the round trip, measured for
  the answer and at start.

Usage: ctl_test.py COALESCE ASSETS_DIR GUEST_DIR CASE"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from edge_agent_process import EdgeAgent  # noqa: E402
from kvm_required import kvm_problem  # noqa: E402
from proc_usage import cpu_used  # noqa: E402
import test_checks  # noqa: E402
from test_checks import check, wait_for  # noqa: E402

COALESCE, ASSETS, GUESTS, CASE = sys.argv[1:5]
NESTED = os.environ.get("COALESCE_NESTED_KVM") == "1"
def ctl(*args):
    return test_checks.ctl(COALESCE, *args)


problem = kvm_problem()
if problem:
    print(f"FAIL: {problem}")
    sys.exit(1)
run_dir = tempfile.mkdtemp(prefix="coalesce-ctl-")
os.environ["COALESCE_RUN_DIR"] = run_dir
name = f"ctl-{CASE}-{os.getpid()}"
out_path = os.path.join(run_dir, "console.txt")

# Bad usage first: no VM by that name, unknown flags, a bad name.
rc, _, err = ctl("--vm", "no-such-vm", "status")
check("ctl on a VM that does not run: exit 2 naming the socket", rc == 2 and "nothing listens on" in err, err)
rc, _, err = ctl("--vm", "a/b", "status")
check("ctl with a bad name: exit 2", rc == 2 and "VM name 'a/b'" in err, err)
rc, _, err = ctl("status")
check("ctl without --vm: exit 2 with usage", rc == 2 and "usage: coalesce ctl" in err, err)
rc, _, err = ctl("--vm", "x", "--socket", os.path.join(run_dir, "x.sock"), "status")
check("ctl with both --vm and --socket: exit 2 with usage", rc == 2 and "--vm NAME or --socket PATH" in err, err)
rc, _, err = ctl("--socket", os.path.join(run_dir, "none.sock"), "leases")
check("ctl --socket with nothing there: exit 2 naming the socket", rc == 2 and "none.sock" in err, err)

if CASE == "linux":
    kernel, initrd = os.path.join(ASSETS, "vmlinuz"), os.path.join(ASSETS, "initramfs.cpio")
    cmd = [COALESCE, "run", "--name", name, "--kernel", kernel, "--initrd", initrd, "--vcpus", "2", "--memory",
           "256M", "--append", "console=ttyS0 loglevel=4"]
    with open(out_path, "w") as out:
        # stdin stays open (a pipe nobody writes): the guest's shell waits on the console.
        vm = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    ready = wait_for(out_path, r"no coalesce.cmd, starting a shell", 900 if NESTED else 120)
    check("the guest reached its shell", ready)
    rc, status, err = ctl("--vm", name, "status")
    check("ctl status: the VM, its RAM and node 0 with vCPUs 0-1 owning every page",
          rc == 0 and f"vm {name}: running, 2 vCPUs, 256 MiB of RAM (65536 pages), 1 node(s)" in status
          and "node 0 home: vCPUs 0-1, owns 65536 pages" in status, f"exit {rc}\n{status}\n{err}")
    twin = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    check("a second VM with the same name is refused: exit 2", twin.returncode == 2 and "already running" in twin.stderr,
          f"exit {twin.returncode}\n{twin.stderr}")
    # A busy loop in the guest (bounded: it ends by itself), so that its vCPUs use CPU time while it runs.
    busy_s = 120 if NESTED else 20
    vm.stdin.write(f"(end=$(($(date +%s)+{busy_s})); while [ $(date +%s) -lt $end ]; do :; done) &\n".encode())
    vm.stdin.flush()
    window = 4 if NESTED else 2
    time.sleep(1)
    running_use = cpu_used([vm.pid], window, threads_named="vcpu")[vm.pid]
    rc, reply, err = ctl("--vm", name, "suspend")
    check("ctl suspend: both vCPUs held", rc == 0 and re.search(r"paused: 2 vCPUs at home, 0 on 0 edge node", reply),
          f"exit {rc}\n{reply}\n{err}")
    rc, status, err = ctl("--vm", name, "status")
    check("ctl status says paused", rc == 0 and status.startswith(f"vm {name}: paused, 2 vCPUs"), status + err)
    paused_use = cpu_used([vm.pid], window, threads_named="vcpu")[vm.pid]
    print(f"vCPU threads' CPU seconds over {window} s, running: {running_use:.2f}; paused: {paused_use:.2f}")
    check("while paused the vCPU threads use no CPU time, against the same window running",
          paused_use < 0.05 * window and running_use > 0.3 * window, f"running {running_use}, paused {paused_use}")
    rc, reply, err = ctl("--vm", name, "resume")
    check("ctl resume", rc == 0 and "running again after" in reply, f"exit {rc}\n{reply}\n{err}")
    vm.stdin.write(b"echo RESUMED-$((40+2))\n")
    vm.stdin.flush()
    check("the guest's shell answers after the resume", wait_for(out_path, r"RESUMED-42", 300 if NESTED else 30),
          open(out_path).read()[-2000:])
    rc, _, err = ctl("--vm", name, "reboot-please")
    check("an unknown command: exit 2 naming it", rc == 2 and "unknown command 'reboot-please'" in err, err)
    rc, reply, err = ctl("--vm", name, "shutdown")
    check("ctl shutdown: the power button is pressed", rc == 0 and "ACPI power button pressed" in reply, err)
    try:
        vm_rc = vm.wait(300 if NESTED else 60)
    except subprocess.TimeoutExpired:
        vm.kill()
        vm_rc = None
    check(f"the guest powered off: exit 0 (got {vm_rc})", vm_rc == 0, open(out_path).read()[-3000:])
    check("the control socket is removed", not os.path.exists(os.path.join(run_dir, name + ".sock")))
    rc, _, err = ctl("--vm", name, "status")
    check("ctl after the VM ended: exit 2", rc == 2 and "nothing listens on" in err, err)
elif CASE == "coalesced":
    with EdgeAgent(COALESCE) as agent:
        # Long enough to be asked while it runs: every iteration moves the lock's page between the nodes.
        cmd = [COALESCE, "run", "--name", name, "--kernel", os.path.join(GUESTS, "spinlock.elf"), "--vcpus", "2",
               "--memory", "64M", "--edge", f"{agent.listen}=1", "--append", "iterations=4000000000 timeout_s=3000"]
        with open(out_path, "w") as out:
            vm = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        sock = os.path.join(run_dir, name + ".sock")
        deadline = time.time() + (600 if NESTED else 60)
        while time.time() < deadline and not os.path.exists(sock) and vm.poll() is None:
            time.sleep(0.2)
        time.sleep(3)  # let the guest run on both nodes
        rc, status, err = ctl("--vm", name, "status")
        m0 = re.search(r"^node 0 home: vCPUs 0, owns (\d+) pages", status, re.M)
        m1 = re.search(rf"^node 1 edge {re.escape(agent.listen)}: vCPUs 1, owns (\d+) pages \([\d.]+ MiB\), "
                       r"round trip ([\d.]+) ms now, ([\d.]+) ms at start", status, re.M)
        check("ctl status of a coalesced VM: each node's vCPUs, pages owned (the edge owns some), round trip",
              rc == 0 and m0 and m1 and int(m1.group(1)) > 0 and int(m0.group(1)) + int(m1.group(1)) == 16384
              and float(m1.group(2)) > 0 and float(m1.group(3)) > 0, f"exit {rc}\n{status}\n{err}")
        vm.send_signal(signal.SIGTERM)
        try:
            vm.wait(60)
        except subprocess.TimeoutExpired:
            vm.kill()
            vm.wait()
        check("the control socket is removed when the VM stops", not os.path.exists(sock))
else:
    print(f"unknown case {CASE}")
    sys.exit(2)

test_checks.finish()
