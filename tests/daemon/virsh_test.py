#!/usr/bin/env python3
"""The real virsh (Debian's libvirt-clients) against `coalesce daemon`, as users run them: real processes, a real
UNIX socket, a real state directory.

  virsh_test.py COALESCE ASSETS_DIR protocol   no KVM needed: define, list, dominfo, dumpxml, undefine, bad
                                               XML, unknown names, unsupported calls, two clients at once, a
                                               client that hangs up mid-message or sends garbage, a daemon
                                               restart keeping the definitions, a socket already served
  virsh_test.py COALESCE ASSETS_DIR guests     KVM: Debian's kernel with a shell on COM1 started by virsh;
                                               list, dominfo, vcpuinfo, the interactive console, suspend and
                                               resume, destroy, a guest killed from outside (shut off, crashed),
                                               a daemon restart while the guest is paused (found again, paused;
                                               then resumed), reboot and
                                               shutdown through the ACPI power button
  virsh_test.py COALESCE ASSETS_DIR edge GUESTS_DIR
                                               KVM: a coalesced guest (the spinlock test guest, vCPU 1 on an
                                               edge agent process) defined with the placement in <metadata>:
                                               start, list, vcpuinfo naming where each vCPU runs, dumpxml,
                                               suspend (the home's and the edge runtime's CPU use stop) and
                                               resume, destroy
"""
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

COALESCE, ASSETS, MODE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
GUESTS = os.path.abspath(sys.argv[4]) if len(sys.argv) > 4 else ""
NESTED = os.environ.get("COALESCE_NESTED_KVM") == "1"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from edge_agent_process import EdgeAgent  # noqa: E402
from proc_usage import cpu_used, runtime_pids  # noqa: E402
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"), flush=True)
    if not ok:
        failures.append(name)


class Daemon:
    def __init__(self, workdir):
        self.workdir = workdir
        self.sock = os.path.join(workdir, "sock")
        self.state = os.path.join(workdir, "state")
        self.log = open(os.path.join(workdir, "daemon.log"), "a")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([COALESCE, "daemon", "--socket", self.sock, "--state-dir", self.state],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(self.sock):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(self.sock)
                    s.close()
                    return
                except OSError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("the daemon did not start; log: " + open(self.log.name).read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def virsh(d, *args, timeout=120):
    r = subprocess.run(["virsh", "-c", f"coalesce+unix:///system?socket={d.sock}", *args], capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def domain_xml(name, kernel, initrd="", cmdline="", vcpus=2, memory_mib=64, extra="", devices="", current=None):
    os_extra = (f"<initrd>{initrd}</initrd>" if initrd else "") + (f"<cmdline>{cmdline}</cmdline>" if cmdline else "")
    return (f"<domain type='kvm'>\n  <name>{name}</name>\n  <memory unit='MiB'>{memory_mib}</memory>\n"
            f"  <vcpu{'' if current is None else f' current={current!r}'}>{vcpus}</vcpu>\n  <os>\n    <type arch='x86_64'>hvm</type>\n    <kernel>{kernel}</kernel>\n"
            f"    {os_extra}\n  </os>\n{extra}  <devices>{devices}<console type='pty'/></devices>\n</domain>\n")


def field(out, key):
    for line in out.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return None


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def protocol_tests(work):
    d = Daemon(work)
    d.start()
    kernel = os.path.join(ASSETS, "vmlinuz")
    xml = write(os.path.join(work, "vm1.xml"), domain_xml("vm1", kernel, vcpus=2, memory_mib=64))
    rc, out, err = virsh(d, "define", xml)
    check("define", rc == 0 and "Domain 'vm1' defined" in out, out + err)
    rc, out, err = virsh(d, "list", "--all")
    check("list --all shows the defined domain shut off", rc == 0 and "vm1" in out and "shut off" in out, out + err)
    rc, out, err = virsh(d, "dominfo", "vm1")
    check("dominfo", rc == 0 and field(out, "Name") == "vm1" and field(out, "CPU(s)") == "2" and
          field(out, "Max memory") == "65536 KiB" and field(out, "Persistent") == "yes" and
          field(out, "State") == "shut off" and field(out, "Id") == "-", out + err)
    uuid = field(out, "UUID")
    rc, out, err = virsh(d, "domstate", "vm1")
    check("domstate", rc == 0 and out.strip() == "shut off", out + err)
    rc, dumped, err = virsh(d, "dumpxml", "vm1")
    check("dumpxml is the normalized definition", rc == 0 and f"<uuid>{uuid}</uuid>" in dumped and
          "<memory unit=\"KiB\">65536</memory>" in dumped and f"<kernel>{kernel}</kernel>" in dumped, dumped + err)
    rc, out, err = virsh(d, "define", write(os.path.join(work, "dumped.xml"), dumped))
    rc2, dumped2, _ = virsh(d, "dumpxml", "vm1")
    check("dumpxml output defines the same domain again", rc == 0 and dumped2 == dumped, out + err)
    rc, out, err = virsh(d, "define", "--validate", xml)
    check("define --validate", rc == 0 and "defined" in out, out + err)
    rc, out, err = virsh(d, "domuuid", "vm1")
    check("lookup by name and UUID agree", rc == 0 and out.strip() == uuid, out + err)

    bad = write(os.path.join(work, "bad.xml"), "<domain type='kvm'>\n  <name>bad</name>\n  <memory>65536</memory>\n"
                "  <vcpu>0</vcpu>\n</domain>\n")
    rc, out, err = virsh(d, "define", bad)
    check("invalid XML is refused naming the element and line", rc != 0 and "line 4" in err and "<vcpu>" in err,
          out + err)
    torn = write(os.path.join(work, "torn.xml"), "<domain type='kvm'>\n<name>torn</name>\n<memory>65536\n")
    rc, out, err = virsh(d, "define", torn)
    check("malformed XML is refused", rc != 0 and "malformed XML" in err, out + err)
    disk = write(os.path.join(work, "disk.xml"), domain_xml("disk", kernel, extra="  <devices><disk type='file'/>"
                                                                                  "</devices>\n"))
    rc, out, err = virsh(d, "define", disk)
    check("an unsupported device is refused", rc != 0 and "<disk>" in err, out + err)
    rc, out, err = virsh(d, "list", "--all", "--name")
    check("nothing was defined by the refused definitions", out.split() == ["vm1"], out + err)

    rc, out, err = virsh(d, "dominfo", "nosuch")
    check("an unknown domain is an error", rc != 0 and "nosuch" in err, out + err)
    rc, out, err = virsh(d, "setmaxmem", "vm1", "100000")
    check("an unimplemented call is libvirt's 'not supported'", rc != 0 and "not supported" in err, out + err)
    rc, out, err = virsh(d, "destroy", "vm1")
    check("destroying a shut-off domain is refused", rc != 0 and "not running" in err, out + err)
    rc, out, err = virsh(d, "version")
    check("version", rc == 0 and "Running hypervisor: Coalesce" in out, out + err)
    rc, out, err = virsh(d, "nodeinfo")
    check("nodeinfo", rc == 0 and field(out, "CPU(s)") == str(os.cpu_count()), out + err)
    rc, out, err = virsh(d, "hostname")
    check("hostname", rc == 0 and out.strip() == socket.gethostname(), out + err)

    # Clients that misbehave: a message cut off mid-way, garbage, an idle connection; the daemon serves on.
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(d.sock)
    cut = socket.socket(socket.AF_UNIX)
    cut.connect(d.sock)
    cut.sendall(struct.pack(">IIIiIII", 100, 0x20008086, 1, 66, 0, 0, 0)[:20])
    cut.close()
    junk = socket.socket(socket.AF_UNIX)
    junk.connect(d.sock)
    junk.sendall(b"\xff\xff\xff\xff" + b"x" * 60)
    junk.settimeout(10)
    try:
        gone = junk.recv(100) == b""
    except OSError:
        gone = True
    check("a client sending an impossible length is disconnected", gone)
    results = []

    def one():
        results.append(virsh(d, "dominfo", "vm1")[0])
    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check("six virsh clients at once, with an idle and two broken ones around", results == [0] * 6, str(results))
    idle.close()

    other = Daemon(work)
    other.state = os.path.join(work, "state2")
    other.proc = subprocess.Popen([COALESCE, "daemon", "--socket", d.sock, "--state-dir", other.state],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = other.proc.communicate(timeout=30)[0]
    check("a second daemon refuses a socket that is being served", other.proc.returncode == 2 and
          "another daemon" in out, out)

    rc = d.stop()
    log = open(d.log.name).read()
    check("the daemon stops on SIGTERM with exit 0 and counts the bad input", rc == 0 and "1 malformed" in log,
          log[-500:])
    write(os.path.join(d.state, "domains", "broken.xml"), "<domain")
    d.start()
    rc, out, err = virsh(d, "list", "--all", "--name")
    check("a restarted daemon keeps the definitions (and skips an unreadable one)", out.split() == ["vm1"], out + err)
    check("the unreadable definition is named in the log", "broken.xml" in open(d.log.name).read())
    rc, out, err = virsh(d, "undefine", "vm1")
    rc2, out2, _ = virsh(d, "list", "--all", "--name")
    check("undefine", rc == 0 and out2.split() == [] and
          not os.path.exists(os.path.join(d.state, "domains", "vm1.xml")), out + err + out2)
    check("the daemon stops cleanly", d.stop() == 0)


class Console:
    """`virsh console` on a pseudo-terminal, as a person would use it."""

    def __init__(self, d, name, *extra):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvp("virsh", ["virsh", "-c", f"coalesce+unix:///system?socket={d.sock}", "console", name, *extra])
        self.buf = b""

    def expect(self, text, timeout):
        deadline = time.time() + timeout
        while text.encode() not in self.buf and time.time() < deadline:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                self.buf += chunk
        return text.encode() in self.buf

    def send(self, text):
        os.write(self.fd, text.encode())

    def close(self, timeout=20):
        self.send("\x1d")  # Ctrl-]
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self.expect("\x00never", 0.2)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        return None


def guest_tests(work):
    kernel, initrd = os.path.join(ASSETS, "vmlinuz"), os.path.join(ASSETS, "initramfs.cpio")
    d = Daemon(work)
    d.start()
    image = os.path.join(work, "linux-disk.raw")
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    disk = (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{image}'/>"
            "<target dev='vda' bus='virtio'/></disk>")
    xml = write(os.path.join(work, "linux.xml"),
                domain_xml("linux", kernel, initrd, "console=ttyS0 loglevel=4 coalesce.modules=1", vcpus=2,
                           memory_mib=256, devices=disk, current="1"))
    rc, out, err = virsh(d, "define", xml)
    check("define the Linux guest", rc == 0, out + err)
    rc, out, err = virsh(d, "start", "linux")
    check("start", rc == 0 and "Domain 'linux' started" in out, out + err)
    con = Console(d, "linux")
    booted = con.expect("starting a shell on the console", 600)
    check("the console shows the guest's boot (output from before it was attached included)", booted,
          con.buf[-800:].decode(errors="replace"))
    check("the shell prompt shows on the console (a line without a newline is flushed)", con.expect("/ # ", 60),
          con.buf[-300:].decode(errors="replace"))
    con.send("echo virsh-$((6*7))\r")
    check("the console is interactive: a command typed through virsh runs in the guest",
          con.expect("virsh-42", 120), con.buf[-400:].decode(errors="replace"))
    con.send("echo vda-sectors-$(cat /sys/block/vda/size)\r")
    check("the <disk> of the definition is the guest's /dev/vda (64 MiB)", con.expect("vda-sectors-131072", 120),
          con.buf[-400:].decode(errors="replace"))
    # <vcpu current='1'>2</vcpu>: one CPU at boot, the second plugged in live (ACPI hotplug, docs/HOTPLUG.md).
    rc, out, err = virsh(d, "vcpucount", "linux")
    check("vcpucount: maximum 2, current 1 (config and live)",
          rc == 0 and re.search(r"maximum\s+config\s+2", out) and re.search(r"current\s+live\s+1", out), out + err)
    rc, out, err = virsh(d, "setvcpus", "linux", "3", "--live")
    check("setvcpus 3 --live: refused above the maximum", rc != 0 and "maximum (2" in err, out + err)
    rc, out, err = virsh(d, "setvcpus", "linux", "2", "--live")
    check("setvcpus 2 --live: CPU 1 plugged into the running guest", rc == 0, out + err)
    con.send("echo present-$(cat /sys/devices/system/cpu/present)-x\r")
    check("the guest sees CPUs 0-1 present", con.expect("present-0-1-x", 120), con.buf[-400:].decode(errors="replace"))
    rc, out, err = virsh(d, "dominfo", "linux")
    check("dominfo: 2 CPUs now", rc == 0 and field(out, "CPU(s)") == "2", out + err)
    rc, out, err = virsh(d, "setvcpus", "linux", "1", "--live")
    check("setvcpus 1 --live: the guest offlines and ejects CPU 1", rc == 0, out + err)
    con.send("echo present-$(cat /sys/devices/system/cpu/present)-y\r")
    check("the guest sees CPU 0 alone present", con.expect("present-0-y", 120), con.buf[-400:].decode(errors="replace"))
    rc, out, err = virsh(d, "vcpucount", "linux", "--live")
    check("vcpucount --live: current 1 again", rc == 0 and out.strip() == "1", out + err)
    check("Ctrl-] leaves the console with exit 0", con.close() == 0)
    rc, out, err = virsh(d, "dumpxml", "linux")
    check("dumpxml shows the disk", rc == 0 and f"<source file=\"{image}\"/>" in out and "dev=\"vda\"" in out,
          out + err)

    rc, out, err = virsh(d, "list")
    check("list shows it running with an id", rc == 0 and "linux" in out and "running" in out, out + err)
    rc, out, err = virsh(d, "dominfo", "linux")
    check("dominfo of a running guest: id, state, CPU time", rc == 0 and field(out, "State") == "running" and
          field(out, "Id") not in (None, "-") and (field(out, "CPU time") or "").endswith("s"), out + err)
    rc, out, err = virsh(d, "vcpuinfo", "linux")
    vcpus = [l for l in out.splitlines() if l.startswith("VCPU:")]
    check("vcpuinfo: one entry per present vCPU (1 since setvcpus 1), on this host's CPUs",
          rc == 0 and len(vcpus) == 1 and "running" in out, out + err)
    rc, out, err = virsh(d, "suspend", "linux")
    rc2, state, _ = virsh(d, "domstate", "linux", "--reason")
    check("suspend pauses it", rc == 0 and state.strip() == "paused (user)", out + err + state)

    # The daemon restarts while the guest is paused, then resumes it: the guest keeps running and is found again.
    pid_before = open(os.path.join(d.state, "run", "linux.pid")).read().split()[0]
    check("the daemon stops while a guest is paused", d.stop() == 0)
    check("the guest outlived the daemon", os.path.exists(f"/proc/{pid_before}"))
    d.start()
    rc, state, err = virsh(d, "domstate", "linux", "--reason")
    check("a restarted daemon finds the guest paused", rc == 0 and state.strip() == "paused (user)", state + err)
    rc, out, err = virsh(d, "resume", "linux")
    rc2, state, _ = virsh(d, "domstate", "linux", "--reason")
    check("resume runs it again", rc == 0 and state.strip() == "running (unpaused)", out + err + state)
    con = Console(d, "linux")
    # virsh puts the terminal in raw mode after "Escape character", discarding what was typed before it.
    con.expect("Escape character", 60)
    time.sleep(1)
    con.send("echo again-$((5+5))\r")
    check("its console works through the new daemon", con.expect("again-10", 120),
          con.buf[-400:].decode(errors="replace"))
    con.close()
    rc, out, err = virsh(d, "destroy", "linux")
    rc2, state, _ = virsh(d, "domstate", "linux", "--reason")
    check("destroy", rc == 0 and state.strip() == "shut off (destroyed)", out + err + state)

    # Killed from outside: reported as crashed, and the daemon serves on.
    rc, out, err = virsh(d, "start", "linux")
    pid = int(open(os.path.join(d.state, "run", "linux.pid")).read().split()[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    state = ""
    while time.time() < deadline and "shut off" not in state:
        state = virsh(d, "domstate", "linux", "--reason")[1]
        time.sleep(0.2)
    check("a guest killed from outside shows shut off (crashed)", state.strip() == "shut off (crashed)", state)
    rc, out, err = virsh(d, "list", "--all")
    check("the daemon keeps serving after a guest crash", rc == 0 and "linux" in out, out + err)

    # The ACPI power button: reboot (power off, then a fresh start), then shutdown to "shut off".
    rc, out, err = virsh(d, "start", "linux")
    console_file = os.path.join(d.state, "run", "linux.console")
    check("started again", rc == 0 and wait_for_file_text(console_file, "starting a shell on the console", 600),
          out + err)
    id_before = field(virsh(d, "dominfo", "linux")[1], "Id")
    rc, out, err = virsh(d, "reboot", "linux")
    deadline = time.time() + 300
    id_after = id_before
    while time.time() < deadline and id_after in (id_before, "-", None):
        id_after = field(virsh(d, "dominfo", "linux")[1], "Id")
        time.sleep(0.5)
    check("reboot: the guest powers off on the power button and starts again with a new id",
          rc == 0 and id_after not in (id_before, "-", None), f"{out}{err} id {id_before} -> {id_after}")
    check("the rebooted guest boots to its shell", wait_for_file_text(console_file, "starting a shell", 600))
    rc, out, err = virsh(d, "shutdown", "linux")
    deadline = time.time() + 300
    state = ""
    while time.time() < deadline and "shut off" not in state:
        state = virsh(d, "domstate", "linux", "--reason")[1]
        time.sleep(0.5)
    check("shutdown: the ACPI power button powers Debian's kernel off cleanly", rc == 0 and
          state.strip() == "shut off (shutdown)" and
          "power button pressed" in open(console_file, errors="replace").read(), out + err + state)
    rc, out, err = virsh(d, "undefine", "linux")
    check("undefine", rc == 0, out + err)
    check("the daemon stops cleanly", d.stop() == 0)


def guest_pid(d, name):
    """The pid of domain `name`'s `coalesce run` (its run record)."""
    return int(open(os.path.join(d.state, "run", f"{name}.pid")).read().split()[0])


def wait_for_file_text(path, text, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if text in open(path, errors="replace").read():
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def edge_tests(work):
    agent = EdgeAgent(COALESCE, capacity="vcpus=4,memory=1G")
    d = Daemon(work)
    d.start()
    try:
        meta = ("  <metadata>\n    <coalesce:coalescence xmlns:coalesce='https://coalesce.dev/xmlns/domain/1'>\n"
                f"      <coalesce:edge address='{agent.listen}' vcpus='1'/>\n"
                "    </coalesce:coalescence>\n  </metadata>\n")
        xml = write(os.path.join(work, "edge.xml"),
                    domain_xml("coalesced", os.path.join(GUESTS, "spinlock.elf"), "",
                               # Runs until destroyed: under the nested VM's TCG, 10^8 iterations a CPU (each
                               # CPU keeps the lock's page for long runs) were done in ~30 s, before the resume
                               # check; 4 x 10^9 lasts some twenty minutes there.
                               "iterations=4000000000 timeout_s=3600", vcpus=2, memory_mib=64, extra=meta))
        rc, out, err = virsh(d, "define", xml)
        check("define a coalesced guest (vCPU 1 on an edge agent)", rc == 0, out + err)
        rc, out, err = virsh(d, "dumpxml", "coalesced")
        check("dumpxml keeps the placement", f"address=\"{agent.listen}\"" in out and "vcpus=\"1\"" in out,
              out + err)
        rc, out, err = virsh(d, "start", "coalesced")
        check("start it", rc == 0, out + err)
        deadline = time.time() + 300
        vcpus = {}
        while time.time() < deadline and len(vcpus) < 2:
            rc, out, err = virsh(d, "vcpuinfo", "coalesced")
            vcpus, current = {}, None
            for line in out.splitlines():
                if line.startswith("VCPU:"):
                    current = line.split()[1]
                elif line.startswith("CPU:") and current is not None:
                    vcpus[current] = line.split()[1]
            if len(vcpus) < 2 or vcpus.get("0") in (None, "-1"):
                vcpus = {}
                time.sleep(1)
        check("vcpuinfo: vCPU 0 on a CPU of this host, vCPU 1 on none of them (it is on the edge)",
              vcpus.get("0") not in (None, "-1") and vcpus.get("1") == "-1", out + err)
        rc, out, err = virsh(d, "list")
        check("list shows the coalesced guest running", rc == 0 and "coalesced" in out and "running" in out,
              out + err)
        time.sleep(3)
        rc, state, err = virsh(d, "domstate", "coalesced")
        check("it keeps running across both nodes", state.strip() == "running",
              state + err + open(os.path.join(d.state, "run", "coalesced.log")).read()[-1500:])
        # suspend pauses the vCPUs on both nodes: the home's and the edge runtime's CPU use stop.
        pids = [guest_pid(d, "coalesced")] + runtime_pids()
        window = 4 if NESTED else 2
        running_use = cpu_used(pids, window)
        rc, out, err = virsh(d, "suspend", "coalesced")
        rc2, state, _ = virsh(d, "domstate", "coalesced", "--reason")
        check("suspend: paused (user)", rc == 0 and state.strip() == "paused (user)", out + err + state)
        paused_use = cpu_used(pids, window)
        print(f"CPU seconds over {window} s (home, edge runtime), running: {running_use}; paused: {paused_use}")
        check("while suspended neither the home nor the edge runtime uses CPU time (< 15% of the window each)",
              len(pids) == 2 and all(v < 0.15 * window for v in paused_use.values())
              and sum(running_use.values()) > 4 * sum(paused_use.values()) + 0.2 * window,
              f"processes {pids}: running {running_use}, paused {paused_use}")
        rc, out, err = virsh(d, "resume", "coalesced")
        rc2, state, _ = virsh(d, "domstate", "coalesced", "--reason")
        check("resume: running (unpaused)", rc == 0 and state.strip() == "running (unpaused)", out + err + state)
        resumed_use = cpu_used(pids, window)
        check("after resume both run again", all(v > 0.05 * window for v in resumed_use.values()), f"{resumed_use}")
        rc, out, err = virsh(d, "destroy", "coalesced")
        rc2, state, _ = virsh(d, "domstate", "coalesced", "--reason")
        check("destroy", rc == 0 and state.strip() == "shut off (destroyed)", out + err + state)
        check("the edge agent outlives the guest", agent.proc.poll() is None)
        check("the daemon stops cleanly", d.stop() == 0)
    finally:
        agent.stop()


def main():
    with tempfile.TemporaryDirectory(prefix="coalesce-virsh-") as work:
        try:
            if MODE == "protocol":
                protocol_tests(work)
            elif MODE == "guests":
                guest_tests(work)
            elif MODE == "edge":
                edge_tests(work)
            else:
                print(f"unknown mode {MODE}")
                return 2
        finally:
            log = os.path.join(work, "daemon.log")
            if failures and os.path.exists(log):
                print("--- daemon log\n" + open(log).read()[-3000:])
            # Nothing outlives the test: guests it started (run records) and any daemon on its state dirs.
            for state in ("state", "state2"):
                run = os.path.join(work, state, "run")
                for rec in os.listdir(run) if os.path.isdir(run) else []:
                    if rec.endswith(".pid"):
                        try:
                            os.kill(int(open(os.path.join(run, rec)).read().split()[0]), signal.SIGKILL)
                        except (OSError, ValueError, IndexError):
                            pass
            subprocess.run(["pkill", "-f", "--", f"--state-dir {work}"], check=False)
    print(f"{len(failures)} failures" if failures else "all passed")
    return 1 if failures else 0


sys.exit(main())
