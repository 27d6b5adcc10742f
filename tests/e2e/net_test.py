#!/usr/bin/env python3
"""A virtio network device on a TAP interface, seen by Debian's cloud kernel under coalesce (docs/NETWORK.md).

In a fresh network namespace: a TAP interface (10.77.0.1/24) and, on it, the guest (10.77.0.2). The guest pings
the host side, then sends 2 MiB of random data over TCP to a listener in the namespace; the SHA-256 the guest
computed must be the one the listener computed over what it received. The namespace (and the TAP) go away at
the end. Needs root (namespaces, TAP) and KVM (directly or in the nested VM).

Usage: net_test.py COALESCE ASSETS_DIR [--timeout S]"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("coalesce")
ap.add_argument("assets")
ap.add_argument("--timeout", type=float, default=600)
a = ap.parse_args()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timed_run import run_timed  # noqa: E402

kernel, initrd = os.path.join(a.assets, "vmlinuz"), os.path.join(a.assets, "initramfs.cpio")
for f in (kernel, initrd):
    if not os.path.exists(f):
        print(f"FAIL: {f} is missing (run scripts/guest-assets.sh)")
        sys.exit(1)
failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail and not ok else ''}", flush=True)
    if not ok:
        failures.append(name)


def sh(*cmd):
    subprocess.run(list(cmd), check=True)


ns = f"coalesce-net-{os.getpid()}"
size = 2 << 20
work = tempfile.mkdtemp(prefix="coalesce-net-test-")
result = os.path.join(work, "received")
LISTENER = f"""
import hashlib, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.1", 5001)); s.listen(1); s.settimeout({a.timeout})
c, _ = s.accept(); c.settimeout(120); h = hashlib.sha256(); n = 0
while n < {size}:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
c.close()
open("{result}", "w").write(f"{{n}} {{h.hexdigest()}}")
"""
sh("ip", "netns", "add", ns)
listener = None
try:
    sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
    sh("ip", "netns", "exec", ns, "ip", "tuntap", "add", "dev", "ctap0", "mode", "tap")
    sh("ip", "netns", "exec", ns, "ip", "addr", "add", "10.77.0.1/24", "dev", "ctap0")
    sh("ip", "netns", "exec", ns, "ip", "link", "set", "ctap0", "up")
    listener = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER])
    guest = ("ip link set eth0 up && ip addr add 10.77.0.2/24 dev eth0 && "
             "echo MAC=$(cat /sys/class/net/eth0/address) && "
             "ping -c 3 -W 10 10.77.0.1 > /tmp/ping; echo PING=$?; "
             f"head -c {size} /dev/urandom > /tmp/x && echo SENT=$(sha256sum /tmp/x) && "
             "nc 10.77.0.1 5001 < /tmp/x; echo NC=$?")
    cmd = ["ip", "netns", "exec", ns, a.coalesce, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M",
           "--net", "tap=ctap0,mac=52:54:00:ab:cd:ef",
           "--append", f'console=ttyS0 loglevel=4 coalesce.modules=1 coalesce.cmd="{guest}"']
    print("running:", " ".join(cmd), flush=True)
    rc, out, _ = run_timed(cmd, a.timeout, echo=True)
    check("the guest powers off (exit 0)", rc == 0, f"rc={rc}")

    def grab(key):
        m = re.search(rf"^{key}=(\S+)", out, re.M)
        return m.group(1) if m else None

    check("the guest's NIC has the MAC given on the command line", grab("MAC") == "52:54:00:ab:cd:ef", str(grab("MAC")))
    check("the guest pings the host side of the TAP", grab("PING") == "0", str(grab("PING")))
    listener.wait(timeout=60)
    got = open(result).read().split() if os.path.exists(result) else []
    sent = grab("SENT")
    check("the listener received every byte the guest sent", got[:1] == [str(size)], str(got))
    check("with the same SHA-256", len(got) == 2 and got[1] == sent, f"{got} vs {sent}")
finally:
    if listener and listener.poll() is None:
        listener.kill()
    subprocess.run(["ip", "netns", "del", ns])
    subprocess.run(["rm", "-rf", work])
print("PASS" if not failures else f"FAIL: {', '.join(failures)}")
sys.exit(1 if failures else 0)
