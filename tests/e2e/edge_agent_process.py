"""A `coalesce edge` agent as a child process, for tests and benchmarks: started on a given (or free) loopback
port, optionally inside `ip netns exec NS`, ready once it accepts TCP connections, stopped with SIGTERM. Its
output (and its runtimes', which inherit it) goes to a file, never to a pipe nobody reads: a runtime that filled
such a pipe would block in its next log line. `log_tail()` reads it for a failure's details.
Also the throwaway CA (`coalesce pki`) that tests use for mutual TLS between home and agents."""
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throwaway_pki(coalesce, directory, nodes):
    """A CA in `directory` and a certificate per node ({name: address}); returns {name: [--tls-* flags]}."""
    subprocess.run([coalesce, "pki", "ca", directory, "--days", "1"], check=True, stdout=subprocess.DEVNULL)
    flags = {}
    for name, address in nodes.items():
        subprocess.run([coalesce, "pki", "issue", directory, name, "--san", address, "--days", "1"], check=True,
                       stdout=subprocess.DEVNULL)
        flags[name] = ["--tls-ca", f"{directory}/ca.pem", "--tls-cert", f"{directory}/{name}.pem",
                       "--tls-key", f"{directory}/{name}.key"]
    return flags


class EdgeAgent:
    def __init__(self, coalesce, listen=None, capacity="vcpus=8,memory=4G", netns=None, start_timeout=30,
                 extra_args=()):
        self.listen = listen or f"127.0.0.1:{free_port()}"
        cmd = [coalesce, "edge", "--listen", self.listen, "--capacity", capacity] + list(extra_args)
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        self.log = tempfile.NamedTemporaryFile(prefix="coalesce-edge-", suffix=".log")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        host, port = self.listen.rsplit(":", 1)
        deadline = time.time() + start_timeout
        while time.time() < deadline:
            try:
                with socket.create_connection((host, int(port)), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"edge agent {self.listen} exited: {self.log_tail()}")
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"edge agent {self.listen} did not start within {start_timeout}s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def log_tail(self, limit=3000):
        """The last `limit` characters the agent and its runtimes wrote."""
        with open(self.log.name, errors="replace") as f:
            return f.read()[-limit:]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
