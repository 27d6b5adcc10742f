"""A small QMP client (QEMU's machine protocol, JSON lines over a UNIX socket) for the benchmarks' QEMU baselines:
connect (waiting for QEMU to create the socket), negotiate capabilities, run commands, wait for events."""
import json
import socket
import time


class Qmp:
    def __init__(self, path, connect_timeout=30):
        deadline = time.time() + connect_timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(60)
        self.buf = b""
        self.read()  # greeting
        self.call("qmp_capabilities")

    def read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("QMP closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, command, **arguments):
        """Runs `command`; returns its "return" value (events that arrive meanwhile are dropped)."""
        self.sock.sendall(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        while True:
            msg = self.read()
            if "return" in msg or "error" in msg:
                if "error" in msg:
                    raise SystemExit(f"QMP {command}: {msg['error']}")
                return msg["return"]

    def wait_event(self, name, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = self.read()
            if msg.get("event") == name:
                return msg
        raise SystemExit(f"no QMP event {name}")
