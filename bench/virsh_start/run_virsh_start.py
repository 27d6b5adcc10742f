#!/usr/bin/env python3
"""Time from starting a defined guest through `coalesce daemon` to its first console line, against `coalesce run`
of the same guest to its first stdout line, alternating in the same run. Two clients of the daemon, each round:
libvirt's client library in this (running) process, virDomainCreate then the console stream, which is what
`virsh start --console` calls (the value: what the daemon costs, as QMP's client is timed in the hotplug
benchmarks), and the `virsh start --console` command itself (its process start included). The daemon is started
once beforehand (it is a long-running service; its start-up is not what a user waits for). The guest is the
project's `hello` test guest: it prints a line at once and powers off, so the figure is the management path's
overhead on top of the VMM's own start.

Last line: one JSON object (name, value, unit, baseline, ratio; the goal is ratio <= 1.1), with the `virsh start
--console` median and its ratio, and the median times of `virsh --version` (the client's own start) and of
`virsh domstate` (a whole do-nothing command: start, connect, lookup, one call), both part of virsh's figure.

Usage: run_virsh_start.py COALESCE HELLO_ELF [--rounds N]"""
import argparse
import json
import os
import pty
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("hello")
ap.add_argument("--rounds", type=int, default=5)
a = ap.parse_args()
a.coalesce, a.hello = os.path.abspath(a.coalesce), os.path.abspath(a.hello)
LINE = b"Hello from the coalesce test guest"


def first_line_direct():
    t0 = time.monotonic()
    p = subprocess.Popen([a.coalesce, "run", "--kernel", a.hello, "--vcpus", "1", "--memory", "64M"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""
    while LINE not in buf:
        chunk = p.stdout.read1(4096)
        if not chunk:
            raise RuntimeError("coalesce run ended before the first line")
        buf += chunk
    t = time.monotonic() - t0
    p.wait(timeout=120)
    return t


def load_libvirt():
    """libvirt's Python binding (Debian's python3-libvirt) from whichever Python 3 runs this: a Python of another
    install (pyenv) finds it in Debian's dist-packages, built for the same 3.x."""
    try:
        import libvirt
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        import libvirt
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors come back as exceptions
    return libvirt


def first_line_api(libvirt, conn):
    """virDomainCreate and the console stream through libvirt's own client library, as `virsh start --console`
    calls them, in a client that is already running: the daemon's part without the virsh process's start."""
    dom = conn.lookupByName("hello")
    t0 = time.monotonic()
    dom.create()
    stream = conn.newStream(0)
    dom.openConsole(None, stream, 0)
    buf = b""
    while LINE not in buf:
        chunk = stream.recv(4096)
        if not isinstance(chunk, bytes) or not chunk:
            raise RuntimeError("the console stream ended before the first line: " + buf[-500:].decode(errors="replace"))
        buf += chunk
    t = time.monotonic() - t0
    # The guest powers off by itself; the stream then ends.
    while isinstance(chunk, bytes) and chunk:
        chunk = stream.recv(4096)
    try:
        stream.finish()
    except libvirt.libvirtError:
        pass
    return t


def first_line_virsh(sock):
    t0 = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("virsh", ["virsh", "-c", f"coalesce+unix:///system?socket={sock}", "start", "hello",
                            "--console"])
    buf = b""
    deadline = time.time() + 300
    while LINE not in buf and time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    t = time.monotonic() - t0
    if LINE not in buf:
        os.kill(pid, signal.SIGKILL)
        raise RuntimeError("virsh start --console showed no first line: " + buf[-500:].decode(errors="replace"))
    # The guest powers off by itself; the console then ends and virsh exits.
    end = time.time() + 120
    while time.time() < end:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        try:
            if select.select([fd], [], [], 0.2)[0]:
                os.read(fd, 4096)
        except OSError:
            pass
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(fd)
    return t


with tempfile.TemporaryDirectory(prefix="coalesce-virsh-bench-") as work:
    sock = os.path.join(work, "sock")
    log = open(os.path.join(work, "daemon.log"), "w")
    daemon = subprocess.Popen([a.coalesce, "daemon", "--socket", sock, "--state-dir", os.path.join(work, "state"),
                               "--log-level", "warning"], stdout=log, stderr=log)
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    xml = os.path.join(work, "hello.xml")
    with open(xml, "w") as f:
        f.write(f"<domain type='kvm'><name>hello</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                f"<os><type>hvm</type><kernel>{a.hello}</kernel></os></domain>")
    subprocess.run(["virsh", "-c", f"coalesce+unix:///system?socket={sock}", "define", xml], check=True,
                   capture_output=True)
    libvirt = load_libvirt()
    conn = libvirt.open(f"coalesce+unix:///system?socket={sock}")
    direct, via, api, client, noop = [], [], [], [], []

    def wait_shut_off():
        """Until the daemon has seen the guest end, before the next start."""
        for _ in range(600):
            if conn.lookupByName("hello").state()[0] == libvirt.VIR_DOMAIN_SHUTOFF:
                return
            time.sleep(0.1)
        raise RuntimeError("the guest did not end")

    try:
        for i in range(a.rounds):
            # virsh's own start (loading libvirt, no connection), for reading the ratio: it is in `value`
            # and no daemon can remove it.
            t0 = time.monotonic()
            subprocess.run(["virsh", "--version"], capture_output=True, check=True)
            client.append(time.monotonic() - t0)
            # ... and a whole do-nothing command (connect, lookup, one call): the floor of any virsh command.
            t0 = time.monotonic()
            subprocess.run(["virsh", "-c", f"coalesce+unix:///system?socket={sock}", "domstate", "hello"],
                           capture_output=True, check=True)
            noop.append(time.monotonic() - t0)
            direct.append(first_line_direct())
            api.append(first_line_api(libvirt, conn))
            wait_shut_off()
            via.append(first_line_virsh(sock))
            wait_shut_off()
            print(f"round {i + 1}/{a.rounds}: coalesce run {direct[-1]:.3f} s, libvirt API {api[-1]:.3f} s, "
                  f"virsh start --console {via[-1]:.3f} s", flush=True)
    finally:
        conn.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    value, baseline, virsh = statistics.median(api), statistics.median(direct), statistics.median(via)
    print(json.dumps({"name": "virsh_start_first_line", "value": round(value, 4), "unit": "s",
                      "baseline": round(baseline, 4), "ratio": round(value / baseline, 3),
                      "value_is": "virDomainCreate + console stream to the first line, libvirt's client library "
                                  "in a running client (what virsh start --console calls)",
                      "baseline_is": "coalesce run of the same guest to its first stdout line",
                      "virsh_start_console_s": round(virsh, 4), "virsh_ratio": round(virsh / baseline, 3),
                      "virsh_client_start_s": round(statistics.median(client), 4),
                      "virsh_domstate_s": round(statistics.median(noop), 4),
                      "rounds": a.rounds, "all_api": [round(x, 4) for x in api],
                      "all_virsh": [round(x, 4) for x in via], "all_run": [round(x, 4) for x in direct],
                      "goal": "ratio <= 1.1"}))
