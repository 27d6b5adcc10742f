#!/usr/bin/env python3
"""Moving vCPUs of a running coalesced VM between nodes (docs/COALESCENCE.md, "Moving a vCPU").

The vcpu_move guest (tests/guests/vcpu_move.c) runs on 3 vCPUs: vCPU 0 at home, vCPU 1 on edge agent A
(node 1), vCPU 2 on edge agent B (node 2). While it computes, pings and ticks, `coalesce ctl move` moves
vCPU 1 home, then to B (an edge-to-edge move, through the home), vCPU 2 home and back to B, vCPU 1 back to A;
`ctl status` shows each placement. The guest then checks, after every move: a register-held LCG that must
match its replay, an exact spinlock counter, every ping answered exactly once (physical, logical and
all-but-self IPIs), its LAPIC timers still ticking and its TSC never going backwards; it prints the largest
TSC gap each vCPU saw (the guest-visible pause of its moves). Refused moves (the BSP, no such vCPU or node, a
vCPU already there) exit 2 with the reason, and the guest runs on.

CASE departure: the same guest; edge agent B gets SIGTERM while the guest runs: its runtime asks the home to
take vCPU 2, hands its pages back as it leaves the DSM, and exits; the home reports the departure (vCPUs and
pages, each timed), `ctl status` shows vCPU 2 at home, agent B exits 0, and the guest finishes its checks
and passes (no page lost: its counter and every register-held result check out).

CASE degraded: the guest on 2 vCPUs from a profile with policies.latency_bound_us, vCPU 1 on B, the link
emulated (1 us); `ctl link 1 latency=...` degrades the home's link to B while the guest runs; the home's link
monitor sees the round trip over the bound three rounds in a row and sends vCPU 1 home, B's runtime leaves
(pages handed back) while agent B keeps serving, and the guest passes. Bad `ctl link` arguments are refused.

CASE attach: the same guest starts with vCPUs 0 and 2 at home and vCPU 1 on A; `ctl attach B vcpus=2` leases
vCPU 2 on agent B while the guest runs (a new node joins the mesh and vCPU 2 moves there); `ctl detach B`
sends it home again (the node leaves with its pages) and a second attach makes B a new node; bad attach and
detach requests are refused; the guest passes.

CASE lease: the moves placement, agent B granting at most 3 s leases: the home renews them (`ctl status` counts
renewals) and vCPU 2 stays on B for several lease lengths; then B's operator lists its leases and revokes the VM's
over the agent's control socket (`ctl --socket PATH leases|revoke VM_ID`): the runtime leaves, vCPU 2 and its pages
go home, agent B serves on, and the guest passes. Bad revokes are refused.

CASE suspend: the moves placement; `ctl suspend` pauses the guest on every node (the reply counts the vCPUs held
at home and on the edges) and `ctl status` says paused; while paused the home and both runtimes use next to no CPU
time (against the same window while running), vCPU 1 still moves home and back (it waits at its gate wherever it
is), attach and a second suspend are refused; `ctl resume` runs it again. The guest passes, and each AP's largest
TSC gap covers the pause: the edges' vCPUs, not only the home's, stood still.

CASE linux: Debian's kernel with vCPU 1 on agent A; at its shell command a process pinned to each CPU sums
1..i for a while and checks the sum against i(i+1)/2; `ctl move` sends vCPU 1 home and back twice meanwhile;
both sums check out, the command exits 0 and the kernel powers off (exit 0).

Usage: vcpu_move_test.py COALESCE GUEST_DIR CASE [ASSETS_DIR]
(CASE: moves | departure | degraded | attach | lease | suspend | linux)"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from edge_agent_process import EdgeAgent, free_port  # noqa: E402
from kvm_required import kvm_problem  # noqa: E402
from proc_usage import cpu_used, runtime_pids, thread_cpu_used  # noqa: E402
import test_checks  # noqa: E402
from test_checks import check, wait_for  # noqa: E402

COALESCE, GUESTS, CASE = sys.argv[1:4]
ASSETS = sys.argv[4] if len(sys.argv) > 4 else ""
NESTED = os.environ.get("COALESCE_NESTED_KVM") == "1"
def ctl(*args):
    return test_checks.ctl(COALESCE, *args)


def b_ctl(*args):
    """`coalesce ctl` on agent B's control socket (its operator's commands)."""
    return test_checks.ctl(COALESCE, "--socket", b_control, *args)


problem = kvm_problem()
if problem:
    print(f"FAIL needs KVM: {problem}")
    sys.exit(1)

run_dir = tempfile.mkdtemp(prefix="coalesce-move-")
os.environ["COALESCE_RUN_DIR"] = run_dir
name = "movetest"
seconds = 150 if NESTED else 25
# Under the nested VM a second test runs beside this one on the same emulated core: an edge's vCPU went unscheduled
# for seconds at a time, so a ping's answer gets 120 s there (a lost one still fails). For the same reason an edge's
# AP, which faults in its trampoline, tables and code over the DSM, once took over the guest's default 10 s to check
# in there (CI, stop 25): 120 s in the nested VM.
guest_args = f"seconds={seconds} ping_timeout_s={120 if NESTED else 30}" + (" ap_timeout_ms=120000" if NESTED else "")
out_path = os.path.join(run_dir, "vm.out")
pauses = []
paused_s = 0  # CASE suspend: how long the home says the guest was paused

b_control = os.path.join(run_dir, "agent-b.sock")
b_args = ["--control", b_control] + (["--max-lease", "3"] if CASE == "lease" else [])
with EdgeAgent(COALESCE) as a, EdgeAgent(COALESCE, extra_args=b_args) as b:
    cmd = [COALESCE, "run", "--name", name, "--kernel", os.path.join(GUESTS, "vcpu_move.elf"), "--vcpus", "3",
           "--memory", "64M", "--edge", f"{a.listen}=1", "--edge", f"{b.listen}=2",
           "--append", guest_args]
    if CASE == "attach":
        cmd = [COALESCE, "run", "--name", name, "--kernel", os.path.join(GUESTS, "vcpu_move.elf"), "--vcpus", "3",
               "--memory", "64M", "--edge", f"{a.listen}=1", "--append", guest_args]
    if CASE == "linux":
        seconds_busy = 150 if NESTED else 25
        # Each CPU's process: sums 1..i until the time is up (checking the clock every 200 steps), then checks
        # the sum against i(i+1)/2. No double quote may appear (the command line carries it in one).
        work = ("i=0; s=0; end=$(($(date +%s)+" + str(seconds_busy) + ")); while [ $(date +%s) -lt $end ]; do "
                "j=0; while [ $j -lt 200 ]; do j=$((j+1)); i=$((i+1)); s=$((s+i)); done; done; "
                "if [ $s -eq $((i*(i+1)/2)) ]; then echo CPU$0-SUM-OK i=$i; else echo CPU$0-SUM-BAD i=$i s=$s; fi")
        guest_cmd = f"echo MOVE-WORK-START; for c in 0 1; do taskset -c $c sh -c '{work}' $c & done; wait"
        cmd = [COALESCE, "run", "--name", name, "--kernel", os.path.join(ASSETS, "vmlinuz"), "--initrd",
               os.path.join(ASSETS, "initramfs.cpio"), "--vcpus", "2", "--memory", "256M",
               "--edge", f"{a.listen}=1", "--append", f'console=ttyS0 loglevel=4 coalesce.cmd="{guest_cmd}"']
    bound_us, degraded = (50000, "200ms") if NESTED else (5000, "50ms")
    if CASE == "degraded":
        profile = os.path.join(run_dir, "bound.textproto")
        # Two nodes and a 1 us emulated link (emulation must be on from the start for `ctl link` to change it;
        # three nodes behind emulated links start slowly under the nested VM's TCG).
        with open(profile, "w") as f:
            f.write(f'guest {{ kernel: "{os.path.join(GUESTS, "vcpu_move.elf")}" memory: "64M" vcpus: 2 }}\n'
                    f'home {{ vcpus: [0] }}\nedge {{ address: "{b.listen}" vcpus: [1] }}\n'
                    f'policies {{ latency_bound_us: {bound_us} }}\n')
        cmd = [COALESCE, "run", "--name", name, "--profile", profile, "--link", "latency=1us",
               "--append", guest_args]
    with open(out_path, "w") as out:
        vm = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    started = wait_for(out_path, r"vcpu_move: running|MOVE-WORK-START", 1200 if NESTED else 120, vm)
    check("the guest runs on its nodes", started, open(out_path).read()[-3000:])

    def move(vcpu, node, want_from, want_to):
        rc, reply, err = ctl("--vm", name, "move", str(vcpu), node)
        m = re.search(rf"vCPU {vcpu} moved from node {want_from} to node {want_to}; paused ([\d.]+) ms", reply)
        check(f"move vCPU {vcpu} {node}: node {want_from} -> node {want_to}", rc == 0 and m,
              f"exit {rc}\n{reply}\n{err}")
        if m:
            pauses.append(float(m.group(1)))

    def placement(want):
        rc, status, err = ctl("--vm", name, "status")
        got = {int(n): v for n, v in re.findall(r"^node (\d) \S+(?: \S+)?: vCPUs ([\d,\-]+|none),", status, re.M)}
        check(f"status shows {want}", rc == 0 and got == want, f"exit {rc}\n{status}\n{err}")

    if started and CASE == "departure":
        time.sleep(2)  # let vCPU 2 own pages on B
        b.proc.send_signal(signal.SIGTERM)
        try:
            b_rc = b.proc.wait(60)
        except subprocess.TimeoutExpired:
            b_rc = None
        check(f"agent B exits 0 after SIGTERM (got {b_rc})", b_rc == 0)
        # The agent's SIGTERM to its runtime says why, and the home's report repeats it.
        left = wait_for(out_path, r"left \(the edge agent is shutting down", 30, vm)
        m = re.search(r"coalesce run: edge \S+ \(node 2\) left \(the edge agent is shutting down\): vCPUs 2 moved home in "
                      r"([\d.]+) ms, its pages in ([\d.]+) ms more", open(out_path).read())
        check("the home reports the departure: vCPU 2 home, then its pages, each timed", left and m,
              open(out_path).read()[-3000:])
        if m:
            print(f"departure: vCPUs home in {m.group(1)} ms, pages in {m.group(2)} ms more")
        placement({0: "0,2", 1: "1", 2: "none"})
        late_before_done = "late phase" in open(out_path).read()
        check("the departure finished before the guest's late phase (its timers are checked after it)",
              not late_before_done)
    elif started and CASE == "linux":
        time.sleep(10 if NESTED else 3)  # both processes at work
        for node, want_from, want_to in (("home", 1, 0), ("1", 0, 1), ("home", 1, 0), ("1", 0, 1)):
            move(1, node, want_from, want_to)
        placement({0: "0", 1: "1"})
        try:
            vm_rc = vm.wait(seconds_busy * 6 + (900 if NESTED else 120))
        except subprocess.TimeoutExpired:
            vm.kill()
            vm_rc = None
        output = open(out_path).read()
        check("both CPUs' sums check out after the moves", "CPU0-SUM-OK" in output and "CPU1-SUM-OK" in output,
              output[-3000:])
        check(f"the command exits 0 and the kernel powers off: exit 0 (got {vm_rc})",
              vm_rc == 0 and "COALESCE-CMD-EXIT=0" in output, output[-3000:])
        if pauses:
            print(f"move pauses under Linux (ms, home's view): {' '.join(f'{p:.2f}' for p in pauses)}")
        test_checks.finish()
    elif started and CASE == "attach":
        placement({0: "0,2", 1: "1"})
        for args, why in [([b.listen, "vcpus=0"], "cannot move to an edge"), ([b.listen], "two arguments"),
                          ([f"127.0.0.1:{free_port()}", "vcpus=2"], "attach 127.0.0.1:")]:
            rc, reply, err = ctl("--vm", name, "attach", *args)
            check(f"attach {' '.join(args)} refused: exit 2, '{why}'", rc == 2 and why in err, f"exit {rc}\n{reply}\n{err}")
        rc, reply, err = ctl("--vm", name, "detach", "127.0.0.1:1")
        check("detach of an address not in the VM refused", rc == 2 and "no edge node" in err, err)
        placement({0: "0,2", 1: "1"})
        for round_, node in ((1, 2), (2, 3)):
            rc, reply, err = ctl("--vm", name, "attach", b.listen, "vcpus=2")
            m = re.search(rf"edge {re.escape(b.listen)} attached as node {node} in ([\d.]+) ms \(lease and runtime "
                          r"([\d.]+) ms, vCPUs 2 moved there: paused ([\d.]+) ms\)", reply)
            check(f"attach B (round {round_}): node {node} joins and vCPU 2 moves there", rc == 0 and m,
                  f"exit {rc}\n{reply}\n{err}")
            if m:
                print(f"attach: {m.group(1)} ms in all, lease and runtime {m.group(2)} ms, vCPU pause {m.group(3)} ms")
            want = {0: "0", 1: "1", 2: "2"} if node == 2 else {0: "0", 1: "1", 2: "none", 3: "2"}
            placement(want)
            rc, reply, err = ctl("--vm", name, "detach", b.listen)
            m = re.search(rf"node {node} detached in ([\d.]+) ms", reply)
            check(f"detach B (round {round_}): vCPU 2 home, node {node} gone", rc == 0 and m, f"exit {rc}\n{reply}\n{err}")
            want = {0: "0,2", 1: "1", 2: "none"} if node == 2 else {0: "0,2", 1: "1", 2: "none", 3: "none"}
            placement(want)
        check("agent B serves on after its runtimes left", b.proc.poll() is None)
        late_before_done = "late phase" in open(out_path).read()
        check("attach and detach finished before the guest's late phase", not late_before_done)
    elif started and CASE == "lease":
        time.sleep(15 if NESTED else 10)  # five lease lengths and more: only renewals keep vCPU 2 on B
        rc, status, err = ctl("--vm", name, "status")
        m = re.search(r"^leases renewed: (\d+)$", status, re.M)
        check("the home renewed B's and A's leases (3 s at most on B) while the guest ran",
              rc == 0 and m and int(m.group(1)) >= 4, f"exit {rc}\n{status}\n{err}")
        if m:
            print(f"lease: {m.group(1)} renewals in the first {15 if NESTED else 10} s of the guest's run")
        placement({0: "0", 1: "1", 2: "2"})
        rc, leases, err = b_ctl("leases")
        m = re.search(r"^VM (\S+): VM_STATE_RUNNING, vCPUs 2, 64M, lease ([\d.]+) s left", leases, re.M)
        check("B's operator sees the VM's lease, under 3 s left", rc == 0 and m and float(m.group(2)) <= 3.0,
              f"exit {rc}\n{leases}\n{err}")
        for args, why in [(["revoke", "nobody"], "is not hosted here"), (["revoke"], "takes one argument"),
                          (["evict", "x"], "unknown command")]:
            rc, reply, err = b_ctl(*args)
            check(f"agent B refuses '{' '.join(args)}': exit 2, '{why}'", rc == 2 and why in err, f"exit {rc}\n{reply}\n{err}")
        if m:
            vm_id = m.group(1)
            rc, reply, err = b_ctl("revoke", vm_id)
            r = re.search(r"lease revoked; its runtime left in ([\d.]+) ms", reply)
            check("B's operator revokes the lease: the runtime leaves", rc == 0 and r, f"exit {rc}\n{reply}\n{err}")
            if r:
                print(f"revoke: the runtime left in {r.group(1)} ms (vCPU home and pages with it)")
            left = wait_for(out_path, r"\(node 2\) left", 60 if NESTED else 20, vm)
            check("the home took vCPU 2 and its pages back", left, open(out_path).read()[-3000:])
            d = re.search(r"\(node 2\) left \(([^)]*)\): vCPUs 2 moved home in ([\d.]+) ms, its pages in ([\d.]+) ms more",
                          open(out_path).read())
            if d:
                print(f"revoke: the home reports '{d.group(1)}': vCPU home in {d.group(2)} ms, pages {d.group(3)} ms more")
            placement({0: "0,2", 1: "1", 2: "none"})
            rc, reply, err = b_ctl("revoke", vm_id)
            check("a second revoke is refused: its lease has ended", rc == 2 and "has ended already" in err,
                  f"exit {rc}\n{reply}\n{err}")
        check("agent B serves on after the revoke", b.proc.poll() is None)
        check("the revoke finished before the guest's late phase", "late phase" not in open(out_path).read())
    elif started and CASE == "degraded":
        for args, why in [(["9", "latency=1ms"], "no edge node '9'"), (["1", "latency=fast"], "latency"),
                          (["1"], "two arguments")]:
            rc, reply, err = ctl("--vm", name, "link", *args)
            check(f"link {' '.join(args)} refused: exit 2, '{why}'", rc == 2 and why in err, f"exit {rc}\n{reply}\n{err}")
        placement({0: "0", 1: "1"})
        t0 = time.time()
        rc, reply, err = ctl("--vm", name, "link", "1", f"latency={degraded}")
        check(f"ctl link 1 latency={degraded}", rc == 0 and "link to node 1 is now" in reply, f"exit {rc}\n{reply}\n{err}")
        left = wait_for(out_path, r"\(node 1\) left \(link degraded", 120 if NESTED else 30, vm)
        took = time.time() - t0
        m = re.search(r"coalesce run: edge \S+ \(node 1\) left \(link degraded: round trip ([\d.]+) ms over "
                      rf"policies.latency_bound_us {bound_us} 3 times in a row, over ([\d.]+) ms\): vCPUs 1 moved home in "
                      r"([\d.]+) ms, its pages in ([\d.]+) ms more", open(out_path).read())
        check("the link monitor sends vCPU 1 home after 3 rounds over the bound; its pages follow",
              left and m, open(out_path).read()[-3000:])
        if m:
            print(f"degradation: detected over {m.group(2)} ms (round trip {m.group(1)} ms), vCPU home in "
                  f"{m.group(3)} ms, pages in {m.group(4)} ms; {took:.1f} s from ctl link to the departure line")
        placement({0: "0-1", 1: "none"})
        check("agent B keeps serving after its runtime left", b.proc.poll() is None)
        late_before_done = "late phase" in open(out_path).read()
        check("the departure finished before the guest's late phase (its timers are checked after it)",
              not late_before_done)
    elif started and CASE == "suspend":
        placement({0: "0", 1: "1", 2: "2"})
        pids = [vm.pid] + runtime_pids()
        check("the home and two edge runtimes run", len(pids) == 3, f"processes: {pids}")
        window = 4 if NESTED else 2
        running_use = cpu_used(pids, window)
        rc, reply, err = ctl("--vm", name, "suspend")
        m = re.search(r"paused: 1 vCPUs at home, 2 on 2 edge node\(s\), in ([\d.]+) ms", reply)
        check("suspend holds vCPU 0 at home and one vCPU on each edge", rc == 0 and m, f"exit {rc}\n{reply}\n{err}")
        if m:
            print(f"suspend took {m.group(1)} ms")
        rc, status, err = ctl("--vm", name, "status")
        check("status says paused", rc == 0 and status.startswith(f"vm {name}: paused,"), status + err)
        for args, why in [(["suspend"], "paused already"), (["attach", b.listen, "vcpus=2"], "the guest is paused")]:
            rc, reply, err = ctl("--vm", name, *args)
            check(f"{args[0]} refused while paused: exit 2, '{why}'", rc == 2 and why in err, f"exit {rc}\n{reply}\n{err}")
        # A vCPU moved while paused waits at its gate where it arrives.
        move(1, "home", 1, 0)
        move(1, "1", 0, 1)
        paused_threads = thread_cpu_used(pids, window)
        paused_use = {p: round(sum(t.values()), 2) for p, t in paused_threads.items()}
        print(f"CPU seconds over {window} s, running: {running_use}; paused: {paused_use}")
        print(f"... paused, by thread: {paused_threads}")
        check("while paused the home and both runtimes use next to no CPU time (< 15% of the window each)",
              all(v < 0.15 * window for v in paused_use.values()), f"{paused_threads}")
        check("... against what they used while running (the measurement can tell)",
              sum(running_use.values()) > 4 * sum(paused_use.values()) + 0.2 * window,
              f"running {running_use}, paused {paused_use}")
        rc, reply, err = ctl("--vm", name, "resume")
        m = re.search(r"running again after ([\d.]+) s paused: 1 vCPUs at home, 2 on 2 edge node\(s\)", reply)
        check("resume releases them all", rc == 0 and m, f"exit {rc}\n{reply}\n{err}")
        paused_s = float(m.group(1)) if m else 0
        rc, reply, err = ctl("--vm", name, "resume")
        check("a second resume is refused: exit 2, 'not paused'", rc == 2 and "not paused" in err, f"{reply}{err}")
        placement({0: "0", 1: "1", 2: "2"})
    elif started:
        placement({0: "0", 1: "1", 2: "2"})
        move(1, "home", 1, 0)
        placement({0: "0-1", 1: "none", 2: "2"})
        move(1, b.listen, 0, 2)
        placement({0: "0", 1: "none", 2: "1-2"})
        move(2, "0", 2, 0)
        move(2, "2", 0, 2)
        move(1, "1", 2, 1)
        placement({0: "0", 1: "1", 2: "2"})
        for args, why in [(["0", "home"], "stays home"), (["7", "home"], "does not exist"),
                          (["1", "9"], "no node '9'"), (["1", "1"], "already runs on node 1"),
                          (["1"], "two arguments")]:
            rc, reply, err = ctl("--vm", name, "move", *args)
            check(f"move {' '.join(args)} refused: exit 2, '{why}'", rc == 2 and why in err, f"exit {rc}\n{reply}\n{err}")
        # Moves in a row, as fast as the control socket takes them.
        for i in range(4):
            move(1, "home", 1, 0)
            move(1, "1", 0, 1)
        late_before_done = "late phase" in open(out_path).read()
        check("every move finished before the guest's late phase (its timers are checked after them)",
              not late_before_done)
    try:
        vm_rc = vm.wait(seconds * 4 + (600 if NESTED else 60))
    except subprocess.TimeoutExpired:
        vm.kill()
        vm_rc = None
    output = open(out_path).read()
    # The guest ends through the debug-exit port: PASS writes 0, which `coalesce run` exits as (0 << 1) | 1.
    check(f"the guest checked its work after the moves and passed: exit 1 (got {vm_rc})",
          vm_rc == 1 and "vcpu_move: PASS" in output,
          f"{output[-4000:]}\n-- agent A and its runtimes --\n{a.log_tail()}\n-- agent B and its runtimes --\n{b.log_tail()}")
    gaps = [int(g) for g in re.findall(r"largest TSC gap (\d+) us", output)]
    if pauses:
        print(f"move pauses (ms, home's view): {' '.join(f'{p:.2f}' for p in pauses)}")
    if gaps:
        print(f"largest TSC gap per AP (us, guest's view): {gaps}")
    if CASE == "suspend":
        check(f"each AP's largest TSC gap covers the {paused_s:.1f} s pause (its vCPU stood still): {gaps} us",
              len(gaps) == 2 and paused_s > 0 and all(g >= 0.8 * paused_s * 1e6 for g in gaps))

test_checks.finish()
