"""Edge agents in network namespaces for the harness (--netns): each agent in its own namespace, linked to this
one by a veth pair in a /24 of its own from 198.19.0.0/16 (RFC 2544's benchmarking range), with a default route
back, so every namespace reaches the home's data plane on the first link's address, and (IPv4 forwarding on for
the run, restored after) the other edges' data planes, which the edges connect to each other over. Off loopback the control
plane is mutual TLS from a throwaway CA (it carries the data plane's key, docs/SECURITY.md). Needs root."""
import atexit
import shutil
import subprocess
import tempfile
import uuid

from edge_agent_process import EdgeAgent, throwaway_pki


FORWARD = "/proc/sys/net/ipv4/ip_forward"


def _ip(*args, ns=None):
    cmd = (["ip", "netns", "exec", ns, "ip"] if ns else ["ip"]) + list(args)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


class NetnsNodes:
    def __init__(self, coalesce, count, capacity):
        self.namespaces, self.agents, self.home_ips = [], [], []
        with open(FORWARD) as f:
            self.forward_was = f.read().strip()
        if count > 1:
            with open(FORWARD, "w") as f:
                f.write("1\n")
        tag = uuid.uuid4().hex[:5]
        base = int(tag[:2], 16) % 150
        edges = {}
        for i in range(count):
            ns, vh, ve = f"coal-h{tag}-{i}", f"hh{tag}{i}", f"he{tag}{i}"
            home_ip, edge_ip = f"198.19.{base + i}.1", f"198.19.{base + i}.2"
            _ip("netns", "add", ns)
            self.namespaces.append((ns, vh))
            _ip("link", "add", vh, "type", "veth", "peer", "name", ve)
            _ip("link", "set", ve, "netns", ns)
            _ip("addr", "add", f"{home_ip}/24", "dev", vh)
            _ip("link", "set", vh, "up")
            for args in (("addr", "add", f"{edge_ip}/24", "dev", ve), ("link", "set", ve, "up"),
                         ("link", "set", "lo", "up"), ("route", "add", "default", "via", home_ip)):
                _ip(*args, ns=ns)
            self.home_ips.append(home_ip)
            edges[f"edge{i}"] = edge_ip
        self.pki = tempfile.mkdtemp(prefix="coalesce-harness-pki-")
        atexit.register(shutil.rmtree, self.pki, True)
        tls = throwaway_pki(coalesce, self.pki, dict(edges, home=self.home_ips[0]))
        for i in range(count):
            self.agents.append(EdgeAgent(coalesce, f"{edges[f'edge{i}']}:7001", capacity, netns=self.namespaces[i][0],
                                         extra_args=tls[f"edge{i}"]))
        # The data plane listens on every interface and is advertised on the first link's address.
        self.home_flags = tls["home"] + ["--data-plane", f"{self.home_ips[0]}:0"]

    def stop(self):
        for a in self.agents:
            a.stop()
        with open(FORWARD, "w") as f:
            f.write(self.forward_was + "\n")
        for ns, veth in self.namespaces:
            subprocess.run(["ip", "link", "del", veth], stderr=subprocess.DEVNULL)
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
