#!/usr/bin/env python3
"""Edge agents announced by DNS-SD over multicast DNS, found by `coalesce discover` (docs/COALESCENCE.md,
"Discovery"). No KVM: real agents, a real link, real mDNS packets, in two network namespaces of their own (an
"edge" one and a "home" one joined by a veth pair), so nothing reaches the host's own network.

In the edge namespace: agent A (`--announce`, default name, 4 vCPUs, 2 GiB), agent B (`--announce=lab-b`, 2 vCPUs,
1 GiB), agent C (no --announce), and agent D announcing the same name as B. From the home namespace `coalesce
discover` lists A, B and D (renamed "lab-b #2": names are unique on the link) with their addresses on the link and
TXT records (free/total vCPUs and memory, load, battery, TLS), and never C. Agent B is stopped: the next browse no
longer lists it (it withdrew its records and answers no query). Bad usage exits 2 naming the flag. Needs root (network namespaces); without
it the test fails with the reason rather than skip.

Usage: dns_sd_test.py COALESCE"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_checks  # noqa: E402
from test_checks import check, wait_for  # noqa: E402

COALESCE = sys.argv[1]

if os.geteuid() != 0:
    print("FAIL needs root: network namespaces isolate the test's mDNS traffic from the host's network")
    sys.exit(1)

tag = uuid.uuid4().hex[:6]
ns_edge, ns_home = f"coal-sd-e-{tag}", f"coal-sd-h-{tag}"
subnet = 100 + int(tag[:2], 16) % 100
edge_ip, home_ip = f"198.18.{subnet}.2", f"198.18.{subnet}.1"  # RFC 2544 test range
work = tempfile.mkdtemp(prefix="coalesce-dns-sd-")
agents = {}


def sh(*cmd):
    subprocess.run(list(cmd), check=True)


def start_agent(key, port, capacity, extra):
    log = os.path.join(work, f"agent-{key}.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", ns_edge, COALESCE, "edge", "--listen", f"{edge_ip}:{port}",
                                 "--insecure", "--capacity", capacity, "--control", os.path.join(work, f"{key}.sock")]
                                + extra, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    agents[key] = (proc, log)
    return proc, log


def discover(wait="4"):
    p = subprocess.run(["ip", "netns", "exec", ns_home, COALESCE, "discover", "--wait", wait], capture_output=True,
                       text=True, timeout=60)
    found = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^  (.+?)  (\S+:\d+)  (.*)$", line)
        if m:
            found[m.group(1)] = (m.group(2), m.group(3).split())
    return p.returncode, found, p.stdout + p.stderr


try:
    sh("ip", "netns", "add", ns_edge)
    sh("ip", "netns", "add", ns_home)
    sh("ip", "link", "add", f"se{tag}", "netns", ns_edge, "type", "veth", "peer", "name", f"sh{tag}", "netns", ns_home)
    for ns, dev, ip in ((ns_edge, f"se{tag}", edge_ip), (ns_home, f"sh{tag}", home_ip)):
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    start_agent("a", 7001, "vcpus=4,memory=2G", ["--announce"])
    start_agent("b", 7002, "vcpus=2,memory=1G", ["--announce=lab-b"])
    start_agent("c", 7003, "vcpus=2,memory=1G", [])
    for key in ("a", "b"):
        proc, log = agents[key]
        check(f"agent {key.upper()} starts and says it announces itself", wait_for(log, r"announcing '", 60, proc),
              open(log).read()[-2000:])
    rc, found, text = discover()
    a = next((v for k, v in found.items() if k.endswith(" port 7001")), None)
    check("discover exits 0 and lists agent A under its default name (HOSTNAME port 7001) at its link address",
          rc == 0 and a is not None and a[0] == f"{edge_ip}:7001", text)
    check("A's TXT record: all 4 vCPUs and 2048 MiB free, load, no battery, plaintext",
          a is not None and {"txtvers=1", "vcpus=4/4", "memory=2048/2048", "battery=none", "vms=0", "tls=0"} <= set(a[1])
          and any(re.fullmatch(r"load=\d+\.\d\d", t) for t in a[1]), text)
    check("agent B under the name it was given, with its own capacity",
          found.get("lab-b", ("", []))[0] == f"{edge_ip}:7002" and "vcpus=2/2" in found["lab-b"][1], text)
    check("agent C, which does not announce, is not listed", all(not v[0].endswith(":7003") for v in found.values()),
          text)

    # Names are unique on the link: a second agent asking for B's name gets the next one.
    proc, log = start_agent("d", 7004, "vcpus=1,memory=512M", ["--announce=lab-b"])
    check("agent D starts", wait_for(log, r"announcing '", 60, proc), open(log).read()[-2000:])
    deadline = time.time() + 60
    while True:
        rc, found, text = discover()
        d = [k for k, v in found.items() if v[0] == f"{edge_ip}:7004"]
        if (d and "lab-b" in found) or time.time() > deadline:
            break
    check("D, asking for B's name, is announced as 'lab-b #2'; B keeps 'lab-b'",
          d == ["lab-b #2"] and found.get("lab-b", ("",))[0] == f"{edge_ip}:7002", text + open(log).read()[-1500:])

    # An agent that stops withdraws its announcement: the next browse does not list it.
    proc, log = agents["b"]
    proc.send_signal(signal.SIGTERM)
    check("agent B stops on SIGTERM: exit 0", proc.wait(30) == 0, open(log).read()[-2000:])
    rc, found, text = discover()
    check("after B stopped, discover lists A and D but not B",
          rc == 0 and not any(v[0].endswith(":7002") for v in found.values())
          and any(v[0].endswith(":7001") for v in found.values())
          and any(v[0].endswith(":7004") for v in found.values()), text)

    for args, why in ((["--wait", "0"], "--wait: '0' is not a number of seconds"),
                      (["--wait"], "--wait needs a value"), (["--color"], "unknown flag '--color'")):
        p = subprocess.run([COALESCE, "discover"] + args, capture_output=True, text=True, timeout=30)
        check(f"discover {' '.join(args)}: exit 2 naming it", p.returncode == 2 and why in p.stderr, p.stderr)
    p = subprocess.run([COALESCE, "edge", "--listen", "127.0.0.1:0", "--announce="], capture_output=True, text=True,
                       timeout=30)
    check("edge --announce= (an empty name): exit 2", p.returncode == 2 and "1 to 63 bytes" in p.stderr, p.stderr)
finally:
    for proc, _ in agents.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    for ns in (ns_edge, ns_home):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)

test_checks.finish()
