"""The Linux test guest's shell driven over its console (COM1 on the VMM's stdin and an output file): the
initramfs's /init starts a shell when the command line has no coalesce.cmd (scripts/guest-assets.sh). For
tests and benchmarks that act on a running guest from the host between guest commands (hotplug, moves)."""
import os
import subprocess
import time

from test_checks import wait_for


class GuestGone(Exception):
    """The VMM exited while a command was being typed to its guest; the message has its exit status and the
    console's tail (the VMM's own log goes to the same file)."""


class GuestShell:
    def __init__(self, proc, out_path, slow=1):
        """`proc` a VMM started with stdin=PIPE and its console going to `out_path`; `slow` multiplies timeouts
        (the nested KVM VM runs guests under TCG)."""
        self.proc, self.out_path, self.slow = proc, out_path, slow
        self.steps = 0

    def wait_ready(self, timeout):
        return wait_for(self.out_path, r"no coalesce.cmd, starting a shell", timeout, self.proc)

    def send(self, command):
        """Types `command` and returns the marker its completion prints (for wait_marker)."""
        self.steps += 1
        mark = 1000 + self.steps
        # The marker is computed by the shell, so the echo of the command line itself never matches it.
        try:
            self.proc.stdin.write(f"{command}; echo @@$(({mark - 1}+1))@@\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            try:
                status = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                status = "still running, its stdin closed"
            raise GuestGone(f"the VMM went away (exit status {status}) before the guest got {command!r}; "
                            f"its console and log ended:\n{self.tail()}") from None
        return mark

    def wait_marker(self, mark, timeout):
        """Seconds until `mark` showed (None if it did not within `timeout`)."""
        start = time.time()
        if not wait_for(self.out_path, rf"@@{mark}@@", timeout * self.slow, self.proc):
            return None
        return time.time() - start

    def run(self, command, timeout=60):
        """Runs `command`; returns what it printed (None on timeout)."""
        start = os.path.getsize(self.out_path)
        mark = self.send(command)
        if self.wait_marker(mark, timeout) is None:
            return None
        with open(self.out_path, errors="replace") as f:
            f.seek(start)
            text = f.read()
        # After the command line's last echo: the tty echoes input typed before the shell starts, and the
        # shell again.
        echoed = text.rfind(f"@@$(({mark - 1}+1))@@")
        body = text[text.find("\n", max(echoed, 0)) + 1:text.rfind(f"@@{mark}@@")]
        return body.replace("\r", "")

    def tail(self, limit=3000):
        with open(self.out_path, errors="replace") as f:
            return f.read()[-limit:]


class GuestStartError(Exception):
    """The guest did not reach its shell. Callers decide: a benchmark's baseline may be started once more."""


def start_shell_guest(cmd, out_path, timeout, slow=1):
    """Starts the VMM command `cmd` (stdin a pipe, console into `out_path`) and waits up to `timeout` seconds for
    the guest's shell. Returns (process, GuestShell); on a timeout the VMM is killed and GuestStartError says
    what the console showed last."""
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    shell = GuestShell(proc, out_path, slow)
    if not shell.wait_ready(timeout):
        proc.kill()
        proc.wait()
        raise GuestStartError(f"{os.path.basename(out_path)}: the guest did not reach its shell in {timeout} s: "
                              f"{' | '.join(shell.tail(600).splitlines()[-4:])}")
    return proc, shell
