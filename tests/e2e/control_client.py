"""The client side of a Coalesce control socket (hypervisor/base/control_socket.h: one line in, one reply, then
closed) without a `coalesce ctl` process: for benchmarks that time the VMM's answer alone, as QMP's is timed."""
import socket
import time


def control_request(path, command, timeout=60):
    """Sends `command` to the control socket at `path`. Returns (milliseconds from sending to the end of the
    reply, the reply's text)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        start = time.perf_counter()
        s.sendall(command.encode() + b"\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        ms = (time.perf_counter() - start) * 1000
    return ms, reply.decode(errors="replace")
