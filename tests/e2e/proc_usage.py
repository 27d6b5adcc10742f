"""What tests read of running processes in /proc: the edge runtimes (`coalesce remote-node`) running now, and how
much CPU time a process, or the vCPU threads of one, used over a window of wall time (a paused guest uses none)."""
import os
import time


def runtime_pids():
    """The edge runtimes (`coalesce remote-node`) running now."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1] == b"remote-node":
            pids.append(int(entry))
    return pids


def _cpu_ticks(stat_path):
    """(comm, utime + stime in clock ticks) from a /proc stat file (comm may hold spaces and parentheses)."""
    with open(stat_path) as f:
        head, rest = f.read().rsplit(")", 1)
    fields = rest.split()  # fields[0] is the state (field 3): utime and stime are fields 14 and 15
    return head.split("(", 1)[1], int(fields[11]) + int(fields[12])


def cpu_seconds(pid, threads_named=None):
    """CPU seconds process `pid` used so far: all its threads, or those whose name starts with `threads_named`."""
    if threads_named is None:
        return _cpu_ticks(f"/proc/{pid}/stat")[1] / os.sysconf("SC_CLK_TCK")
    ticks = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm, t = _cpu_ticks(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue  # the thread ended
        if comm.startswith(threads_named):
            ticks += t
    return ticks / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid):
    """{thread name: CPU seconds its threads of that name used so far} for process `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm, t = _cpu_ticks(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue  # the thread ended
        out[comm] = out.get(comm, 0) + t / os.sysconf("SC_CLK_TCK")
    return out


def thread_cpu_used(pids, window):
    """{pid: {thread name: CPU seconds used during `window` seconds}}, busiest first, idle threads left out."""
    before = {p: thread_cpu_seconds(p) for p in pids}
    time.sleep(window)
    out = {}
    for p in pids:
        used = {n: round(t - before[p].get(n, 0), 2) for n, t in thread_cpu_seconds(p).items()}
        out[p] = dict(sorted(((n, t) for n, t in used.items() if t > 0), key=lambda kv: -kv[1]))
    return out


def cpu_used(pids, window, threads_named=None):
    """{pid: CPU seconds it used during `window` seconds of wall time} (see cpu_seconds)."""
    before = {p: cpu_seconds(p, threads_named) for p in pids}
    time.sleep(window)
    return {p: round(cpu_seconds(p, threads_named) - before[p], 2) for p in pids}
