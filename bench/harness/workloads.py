"""The harness's workloads: which guest each runs, with which arguments, and how its console is read.

Each workload yields one figure per run (`metric`, `unit`, and whether more is better) and, for the model, the
wall time of the measured work in seconds (`work_s`). The project's guests measure themselves with the TSC;
the Linux workloads are timed by the guest's own `date` around the job, so boot time is not counted in them."""
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Result:
    value: float
    work_s: float  # seconds the measured work took (the model's unit of time)
    extra: dict = field(default_factory=dict)


@dataclass
class Workload:
    name: str
    description: str
    metric: str
    unit: str
    higher_is_better: bool
    files: tuple                             # guest_paths() keys: the kernel, and the initrd if any
    append: Callable[[bool, int], str]       # (quick, total vCPUs) -> kernel command line
    parse: Callable[[str, float], Optional[Result]]  # (guest console, process seconds) -> result, None if absent
    min_vcpus: int = 1
    linux: bool = False
    memory: str = "256M"
    # Run in the memory-only placement (all vCPUs at home, most of the guest's RAM lent by a memory edge) against
    # its one-node baseline, instead of the vCPUs-per-node matrix.
    memory_only: bool = False


# The project's guests wait 10 s for their APs by default; over a 14-20 ms link the start-up's page bounces take
# longer than that (docs/BENCHMARKS.md), so the harness gives them 20 minutes.
_SLOW_LINK_OK = "ap_timeout_ms=1200000"
_COMPUTE = re.compile(r"compute: cpus=(\d+) rounds_per_cpu=(\d+) wall_us=(\d+) throughput_rounds_per_s=(\d+)")
_SPIN = re.compile(r"spinlock: (\d+) CPUs x (\d+) iterations: counter (\d+) \(expected (\d+)\) in (\d+) ms")
_IPI = re.compile(r"ipi_bench: rounds=(\d+) median=(\d+) mean=(\d+) min=(\d+) p90=(\d+) p99=(\d+) max=(\d+) "
                  r"tsc_khz=(\d+)")
_WALK_PASS = re.compile(r"memory_walk: pass \d+ over (\d+) MiB in (\d+) ms")
_LINUX_JOB = re.compile(r"HARNESS-JOB ms=(\d+)")
_LINUX_EXIT = re.compile(r"COALESCE-CMD-EXIT=(\d+)")


def _compute(out, _process_s):
    m = _COMPUTE.search(out)
    if not m:
        return None
    return Result(float(m.group(4)), int(m.group(3)) / 1e6, {"cpus": int(m.group(1))})


def _spinlock(out, _process_s):
    m = _SPIN.search(out)
    if not m or m.group(3) != m.group(4):  # a wrong count is a failed run, not a figure
        return None
    ms = max(int(m.group(5)), 1)
    total = int(m.group(3))
    return Result(total / (ms / 1000), ms / 1000, {"increments": total})


def _ipi(out, _process_s):
    m = _IPI.search(out)
    if not m:
        return None
    khz = int(m.group(8))
    median_us = int(m.group(2)) / khz * 1000
    rounds = int(m.group(1))
    return Result(median_us, rounds * int(m.group(3)) / khz / 1000,
                  {"p90_us": int(m.group(5)) / khz * 1000, "p99_us": int(m.group(6)) / khz * 1000})


def _memory_walk(out, _process_s):
    passes = [(int(m.group(1)), int(m.group(2))) for m in _WALK_PASS.finditer(out)]
    if not passes or "every word read back" not in out:  # a word read back wrong is a failed run, not a figure
        return None
    ms = max(sum(t for _, t in passes), 1)
    return Result(sum(mb for mb, _ in passes) / (ms / 1000), ms / 1000, {"passes": len(passes)})


def _linux_job(out, _process_s):
    m, e = _LINUX_JOB.search(out), _LINUX_EXIT.search(out)
    if not m or not e or e.group(1) != "0":
        return None
    ms = max(int(m.group(1)), 1)
    return Result(ms / 1000, ms / 1000)


def _linux_boot(out, process_s):
    # Boot is what the process's whole life measures: power-on, /init, power-off.
    return Result(process_s, process_s) if "COALESCE-GUEST:" in out and _LINUX_EXIT.search(out) else None


def _linux_cmd(job):
    # busybox sh, no double quotes allowed (the /init contract): milliseconds from /proc/uptime, whose two decimals
    # are hundredths (the leading 1 keeps "05" from reading as octal).
    t = "read u r </proc/uptime; echo $(( ${u%.*}*1000 + 1${u#*.}*10 - 1000 ))"
    return f'coalesce.cmd="s=$({t}); {job}; e=$({t}); echo HARNESS-JOB ms=$((e-s))"'


def _parallel_cpu_job(quick):
    # Little sharing: one busy shell loop per CPU, each on its own stack and heap.
    n = 20000 if quick else 200000
    return (f"for c in $(seq $(nproc)); do (i=0; while [ $i -lt {n} ]; do i=$((i+1)); done) & done; wait")


def _shared_memory_job(quick):
    # Heavy sharing: a pipe between two processes (its buffer pages pass between the CPUs that run them).
    count = 2000 if quick else 40000
    return f"dd if=/dev/zero bs=4096 count={count} 2>/dev/null | cat >/dev/null"


WORKLOADS = {
    "compute": Workload(
        "compute", "integer hash over each CPU's own page (little sharing)", "throughput", "rounds/s", True,
        ("compute",),
        lambda quick, v: f"work={100 if quick else 2000} {_SLOW_LINK_OK}", _compute),
    "sharing": Workload(
        "sharing", "every CPU increments one counter under one spinlock (heavy sharing)", "throughput",
        "increments/s", True, ("spinlock",),
        lambda quick, v: f"iterations={200 if quick else 5000} timeout_s=1200 {_SLOW_LINK_OK}", _spinlock, min_vcpus=2),
    "ipi": Workload(
        "ipi", "IPI ping-pong between vCPU 0 and vCPU 1 (crosses the link when they are on two nodes)",
        "round_trip", "us", False, ("ipi_bench",),
        lambda quick, v: f"rounds={30 if quick else 300} warmup={5 if quick else 20} timeout_ms=60000 {_SLOW_LINK_OK}", _ipi, min_vcpus=2),
    "memory": Workload(
        "memory", "one CPU writes then reads back a span larger than home's share of guest RAM", "throughput",
        "MiB/s", True, ("memory_walk",),
        lambda quick, v: f"mb={40 if quick else 96} passes={1 if quick else 3}", _memory_walk, memory="128M",
        memory_only=True),
    "linux_parallel": Workload(
        "linux_parallel", "Debian's kernel: one busy shell loop per CPU (little sharing)", "job_time", "s", False,
        ("vmlinuz", "initramfs"),
        lambda quick, v: "console=ttyS0 loglevel=4 " + _linux_cmd(_parallel_cpu_job(quick)), _linux_job,
        linux=True),
    "linux_shared": Workload(
        "linux_shared", "Debian's kernel: 4 KiB blocks through a pipe between two processes (heavy sharing)",
        "job_time", "s", False, ("vmlinuz", "initramfs"),
        lambda quick, v: "console=ttyS0 loglevel=4 " + _linux_cmd(_shared_memory_job(quick)), _linux_job,
        min_vcpus=2, linux=True),
    "linux_boot": Workload(
        "linux_boot", "Debian's kernel: power-on through /init to power-off", "boot_time", "s", False,
        ("vmlinuz", "initramfs"),
        lambda quick, v: 'console=ttyS0 loglevel=4 coalesce.cmd="true"', _linux_boot, linux=True),
}


def guest_paths(root):
    build = os.path.join(root, "build")
    assets = os.environ.get("COALESCE_GUEST_ASSETS", os.path.join(root, "guest-assets"))
    return {
        "coalesce": os.path.join(build, "coalesce"),
        "compute": os.path.join(build, "bench", "compute", "compute.elf"),
        "spinlock": os.path.join(build, "tests", "guests", "spinlock.elf"),
        "ipi_bench": os.path.join(build, "bench", "ipi", "ipi_bench.elf"),
        "memory_walk": os.path.join(build, "tests", "guests", "memory_walk.elf"),
        "vmlinuz": os.path.join(assets, "vmlinuz"),
        "initramfs": os.path.join(assets, "initramfs.cpio"),
    }
