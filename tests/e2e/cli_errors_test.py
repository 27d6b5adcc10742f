#!/usr/bin/env python3
"""Bad input to `coalesce run`: each case must print a clear message naming the problem and exit non-zero.

Usage: cli_errors_test.py COALESCE_BINARY GUEST_ELF [GUEST_ASSETS_DIR]
With GUEST_ASSETS_DIR (scripts/guest-assets.sh), also the Linux cases: a truncated bzImage, an initrd too
large for the guest's memory, a guest memory too small for the kernel.
"""
import os
import subprocess
import sys
import tempfile

COALESCE, GUEST = sys.argv[1], sys.argv[2]
ASSETS = sys.argv[3] if len(sys.argv) > 3 else None
failures = []


def run(args, user=None):
    cmd = [COALESCE, "run"] + args
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=65534", "--clear-groups"] + cmd
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def expect(name, args, status, *needles, user=None):
    rc, out = run(args, user)
    ok = rc == status and all(n in out for n in needles)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {rc} (want {status}); {out.strip().splitlines()[-1] if out.strip() else '(no output)'}")
    if not ok:
        failures.append(name)
        print("---- output ----\n" + out + "----------------")


with tempfile.TemporaryDirectory() as tmp:
    not_kernel = os.path.join(tmp, "notes.txt")
    with open(not_kernel, "w") as f:
        f.write("this is not a kernel\n" * 100)
    truncated = os.path.join(tmp, "truncated.elf")
    with open(GUEST, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: min(len(data) // 2, 9000)])
    missing = os.path.join(tmp, "does-not-exist")

    expect("no kernel", [], 2, "no kernel")
    expect("missing kernel file", ["--kernel", missing], 2, missing, "No such file")
    expect("a file that is no kernel", ["--kernel", not_kernel], 2, not_kernel, "not a kernel")
    expect("truncated Multiboot ELF", ["--kernel", truncated], 2, truncated)
    expect("missing initrd", ["--kernel", GUEST, "--initrd", missing], 2, missing)
    expect("memory not a size", ["--kernel", GUEST, "--memory", "lots"], 2, "--memory", "lots")
    expect("memory too small", ["--kernel", GUEST, "--memory", "1M"], 2, "too small")
    expect("zero vCPUs", ["--kernel", GUEST, "--vcpus", "0"], 2, "--vcpus", "out of range")
    expect("too many vCPUs", ["--kernel", GUEST, "--vcpus", "300"], 2, "--vcpus", "300")
    expect("vCPUs not a number", ["--kernel", GUEST, "--vcpus", "two"], 2, "--vcpus", "two")
    expect("zero hot-pluggable maximum", ["--kernel", GUEST, "--max-vcpus", "0"], 2, "--max-vcpus", "out of range")
    expect("a maximum under the boot count", ["--kernel", GUEST, "--vcpus", "2", "--max-vcpus", "1"], 2,
           "--max-vcpus", "fewer than the 2 vCPUs")
    expect("an edge vCPU past the maximum", ["--kernel", GUEST, "--vcpus", "1", "--max-vcpus", "2", "--edge",
                                            "127.0.0.1:7001=2"], 2, "vCPU 2 does not exist", "max_vcpus is 2")
    expect("a hot-pluggable memory maximum that is no size", ["--kernel", GUEST, "--max-memory", "much"], 2,
           "--max-memory", "much")
    expect("a memory maximum not in whole 128M slots", ["--kernel", GUEST, "--memory", "256M", "--max-memory",
                                                       "300M"], 2, "guest.max_memory", "plus whole 128M slots")
    expect("a memory maximum under the boot RAM", ["--kernel", GUEST, "--memory", "512M", "--max-memory", "256M"], 2,
           "guest.max_memory", "'256M'")
    expect("unknown flag", ["--kernel", GUEST, "--frobnicate"], 2, "--frobnicate")
    expect("flag without value", ["--kernel"], 2, "--kernel needs a value")
    expect("disk with an unknown option", ["--kernel", GUEST, "--disk", "/x.img,cache=none"], 2, "cache=none")
    expect("disk with an unknown format", ["--kernel", GUEST, "--disk", "/x.img,format=vmdk"], 2, "vmdk")
    expect("disk that does not exist", ["--kernel", GUEST, "--disk", missing], 2, missing)
    expect("plaintext to a non-loopback edge agent", ["--kernel", GUEST, "--vcpus", "2", "--edge", "192.0.2.1:7001=1"],
           2, "192.0.2.1:7001 is not a loopback address", "--insecure")
    expect("a non-loopback data plane without TLS or --insecure",
           ["--kernel", GUEST, "--vcpus", "2", "--edge", "127.0.0.1:7001=1", "--data-plane", "192.0.2.5:0"],
           2, "key would travel in clear", "--tls-ca")
    expect("an advertised data plane without a fixed port",
           ["--kernel", GUEST, "--vcpus", "2", "--edge", "127.0.0.1:7001=1", "--data-plane-advertise", "10.1.1.1:7"],
           2, "--data-plane-advertise needs a fixed --data-plane port")
    expect("an advertised data plane that is not host:port",
           ["--kernel", GUEST, "--vcpus", "2", "--edge", "127.0.0.1:7001=1", "--data-plane", "127.0.0.1:7000",
            "--data-plane-advertise", "nowhere"], 2, "--data-plane-advertise")
    expect("home-only memory outside the guest's RAM", ["--kernel", GUEST, "--home-only-memory", "0x40000000+4K"],
           2, "--home-only-memory: [0x40000000, 0x40001000) is not inside the guest's RAM (256M)")
    expect("home-only memory not page-aligned", ["--kernel", GUEST, "--home-only-memory", "0x1000800+4K"],
           2, "'0x1000800+4K'", "multiples of 4 KiB")
    expect("an emulated link that is not a class", ["--kernel", GUEST, "--link", "wifi7"], 2,
           "--link: 'wifi7' is not a link class (infiniband, pcie, 5g-urllc, wifi6e, 5g, wifi-p90, loopback)")
    expect("an emulated link with a bad setting", ["--kernel", GUEST, "--link", "wifi6e,latency=2"], 2,
           "--link: 'wifi6e,latency=2': latency '2' is not a duration")
    expect("TLS files given in part", ["--kernel", GUEST, "--tls-ca", missing], 2, "go together")
    expect("a TLS file that does not exist",
           ["--kernel", GUEST, "--tls-ca", missing, "--tls-cert", missing, "--tls-key", missing], 2, missing)
    # `coalesce pki ca` makes its directory (0700) when the parent exists, and names the one it cannot make.
    pki_dir = os.path.join(tmp, "pki-new")
    p = subprocess.run([COALESCE, "pki", "ca", pki_dir, "--days", "1"], capture_output=True, text=True, timeout=60)
    ok = p.returncode == 0 and os.path.isfile(os.path.join(pki_dir, "ca.pem")) and \
        (os.stat(pki_dir).st_mode & 0o777) == 0o700
    print(f"{'ok  ' if ok else 'FAIL'} pki ca creates its directory, mode 0700: exit {p.returncode}")
    if not ok:
        failures.append("pki ca creates its directory")
        print(p.stdout + p.stderr)
    deep = os.path.join(tmp, "no-such-parent", "pki")
    p = subprocess.run([COALESCE, "pki", "ca", deep], capture_output=True, text=True, timeout=60)
    ok = p.returncode == 2 and deep in p.stderr
    print(f"{'ok  ' if ok else 'FAIL'} pki ca under a missing parent: exit {p.returncode}; {p.stderr.strip()}")
    if not ok:
        failures.append("pki ca under a missing parent")
    # Revocation: `pki revoke` lists a node's certificate in DIR/ca.crl; a node whose own certificate its CRL
    # revokes, or given another CA's CRL, refuses to start and names why (exit 2).
    def pki(*args):
        p = subprocess.run([COALESCE, "pki"] + list(args), capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout + p.stderr

    def pki_expect(name, args, status, *needles):
        rc, out = pki(*args)
        ok = rc == status and all(n in out for n in needles)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {rc} (want {status}); {out.strip().splitlines()[-1] if out.strip() else ''}")
        if not ok:
            failures.append(name)
            print("---- output ----\n" + out + "----------------")

    pki("issue", pki_dir, "home", "--san", "127.0.0.1", "--days", "1")
    pki("issue", pki_dir, "edge", "--san", "127.0.0.1", "--days", "1")
    pki_expect("pki crl writes an empty CRL", ["crl", pki_dir], 0, "ca.crl: 0 revoked")
    pki_expect("pki revoke of a node without a certificate", ["revoke", pki_dir, "nobody"], 2, "nobody.pem")
    pki_expect("pki revoke lists the node's certificate", ["revoke", pki_dir, "home"], 0, "revoked ", "1 revoked")
    pki_expect("pki revoke twice keeps one entry", ["revoke", pki_dir, "home"], 0, "already revoked", "1 revoked")
    pki_expect("pki issue over an existing certificate without --replace",
               ["issue", pki_dir, "edge", "--san", "127.0.0.1"], 2, "exists; not overwritten")
    home_tls = ["--tls-ca", f"{pki_dir}/ca.pem", "--tls-cert", f"{pki_dir}/home.pem", "--tls-key",
                f"{pki_dir}/home.key"]
    expect("home whose own certificate its CRL revokes", ["--kernel", GUEST] + home_tls +
           ["--tls-crl", f"{pki_dir}/ca.crl"], 2, f"--tls-cert {pki_dir}/home.pem", "certificate revoked")
    expect("--tls-crl without the other TLS files", ["--kernel", GUEST, "--tls-crl", f"{pki_dir}/ca.crl"], 2,
           "--tls-crl needs --tls-ca, --tls-cert and --tls-key")
    other_dir = os.path.join(tmp, "pki-other")
    pki("ca", other_dir, "--days", "1")
    pki("crl", other_dir)
    edge = subprocess.run([COALESCE, "edge", "--listen", "127.0.0.1:0", "--tls-ca", f"{pki_dir}/ca.pem",
                           "--tls-cert", f"{pki_dir}/edge.pem", "--tls-key", f"{pki_dir}/edge.key", "--tls-crl",
                           f"{other_dir}/ca.crl"], capture_output=True, text=True, timeout=60)
    ok = edge.returncode == 2 and "not from --tls-ca" in edge.stderr
    print(f"{'ok  ' if ok else 'FAIL'} edge agent given another CA's CRL: exit {edge.returncode}; {edge.stderr.strip()}")
    if not ok:
        failures.append("edge agent given another CA's CRL")
    # Linux (bzImage) inputs.
    if ASSETS:
        vmlinuz = os.path.join(ASSETS, "vmlinuz")
        with open(vmlinuz, "rb") as f:
            image = f.read()
        cut = os.path.join(tmp, "vmlinuz-truncated")
        with open(cut, "wb") as f:
            f.write(image[: len(image) // 3])
        expect("truncated bzImage", ["--kernel", cut], 2, cut, "truncated")
        head = os.path.join(tmp, "vmlinuz-header-only")
        with open(head, "wb") as f:
            f.write(image[:600])
        expect("bzImage cut inside its setup header", ["--kernel", head], 2, head, "truncated")
        big = os.path.join(tmp, "initrd-100M")
        with open(big, "wb") as f:
            f.truncate(100 << 20)
        expect("initrd too large for memory", ["--kernel", vmlinuz, "--initrd", big, "--memory", "128M"], 2,
               big + ": initrd too large")
        expect("memory too small for the kernel", ["--kernel", vmlinuz, "--memory", "32M"], 2,
               "guest memory too small for this kernel")
    # Guest-driven endings: ACPI power-off exits 0; a triple fault exits 6 with a register dump.
    poweroff = os.path.join(os.path.dirname(GUEST), "poweroff.elf")
    expect("guest ACPI S5 power-off", ["--kernel", poweroff], 0, "poweroff: ACPI S5", "powered off")
    expect("guest triple fault", ["--kernel", poweroff, "--append", "triple=1"], 6, "triple fault", "rip=", "cr0=")
    # Without access to /dev/kvm (an unprivileged user; the node is root-only here).
    if os.geteuid() == 0 and (os.stat("/dev/kvm").st_mode & 0o006) == 0:
        expect("no access to /dev/kvm", ["--kernel", GUEST], 8, "/dev/kvm", "Permission denied", user="nobody")
    else:
        print("FAIL no access to /dev/kvm: cannot arrange (not root, or /dev/kvm is world-accessible)")
        failures.append("no access to /dev/kvm")

print(f"{len(failures)} case(s) failed" if failures else "all bad-input cases behave")
sys.exit(1 if failures else 0)
