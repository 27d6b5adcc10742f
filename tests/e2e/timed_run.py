"""Runs a VMM (or any command) with its console streamed line by line: when each marker first appeared (host
monotonic seconds from the start), the whole output, and the exit status (None after a kill on timeout).
Shared by the Linux boot test and the boot benchmarks."""
import re
import subprocess
import sys
import threading
import time


def is_kernel_line_of(line, marker):
    """True for the kernel's console line of a message that is just `marker` ("[   12.345678] MARKER"), also where
    it ends a partial line of tty output that the kernel's console write came in the middle of (seen in CI:
    "  4:   0   0   0   34[    8.258220] SLEEP-BEGIN", the rest of /proc/interrupts' line on the next)."""
    return re.search(r"\[\s*\d+\.\d+\] " + re.escape(marker) + r"\s*$", line) is not None


def run_timed(cmd, timeout, markers=(), echo=False):
    """Returns (rc, output, stamps). stamps: marker -> seconds at the first line starting with it, plus
    "first_output_s" (the first line) and "exit_s" (when the process ended or was killed)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    lines, stamps = [], {}

    def reader():
        for line in proc.stdout:
            now = time.monotonic() - t0
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
            lines.append(line.rstrip("\n"))
            stamps.setdefault("first_output_s", now)
            for marker in markers:  # the whole line, or a kernel log message that is only the marker: the
                # kernel echoes its command line, where the markers appear too
                if marker not in stamps and (line.startswith(marker) or is_kernel_line_of(line, marker)):
                    stamps[marker] = now

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    th.join(10)
    stamps["exit_s"] = time.monotonic() - t0
    return rc, "\n".join(lines), stamps
