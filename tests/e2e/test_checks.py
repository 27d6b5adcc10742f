"""What the end-to-end test scripts share: named checks that print ok/FAIL (with details on failure) and are
counted for the exit status, waiting for a pattern in a VM's output file, and `coalesce ctl` calls."""
import re
import subprocess
import sys
import time

failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}", flush=True)
    if not ok:
        failures.append(name)
        if detail:
            print("---- details ----\n" + detail + "\n-----------------", flush=True)
    return ok


def finish():
    """Prints the summary and exits 1 if any check failed, else 0."""
    print(f"{len(failures)} check(s) failed" if failures else "all checks passed")
    sys.exit(1 if failures else 0)


def wait_for(path, pattern, timeout, proc=None):
    """Whether `pattern` appears in the file at `path` within `timeout` s (False early if `proc` exits)."""
    deadline = time.time() + timeout
    while time.time() < deadline and (proc is None or proc.poll() is None):
        try:
            with open(path) as f:
                if re.search(pattern, f.read()):
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    return False


def ctl(coalesce, *args, timeout=150):
    """`coalesce ctl ARGS`: (exit status, stdout, stderr)."""
    p = subprocess.run([coalesce, "ctl"] + list(args), capture_output=True, text=True, timeout=timeout)
    err = p.stderr
    if p.returncode != 0 and not p.stdout and not err:
        err = f"(coalesce ctl {' '.join(args)} printed nothing and exited with status {p.returncode})\n"
    return p.returncode, p.stdout, err
