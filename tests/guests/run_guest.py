#!/usr/bin/env python3
"""Runs one test guest under coalesce (or QEMU with --qemu) and checks its verdict.

A guest passes when the VMM exits with status (code << 1) | 1 for the expected debug-exit code (0 unless
--expect-code), its console shows "<guest>: PASS" (or, with --expect-code, just the --expect lines), and
every --expect text appears on some console line. On failure the whole console is printed.

Exit status: 0 pass, 1 fail. A missing /dev/kvm is a failure, never a skip.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time


def build_command(args):
    if args.qemu:
        qemu = shutil.which(args.qemu_binary) or args.qemu_binary
        cmd = [qemu, '-accel', 'kvm', '-m', str(args.memory_mib), '-smp', str(args.vcpus),
               '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-reboot',
               '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04', '-kernel', args.kernel]
        if args.append:
            cmd += ['-append', args.append]
        return cmd
    cmd = [args.coalesce, 'run', '--kernel', args.kernel, '--vcpus', str(args.vcpus)]
    if args.append:
        cmd += ['--append', args.append]
    return cmd + args.vmm_arg


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('coalesce', help='path of the coalesce executable (unused with --qemu)')
    p.add_argument('--kernel', required=True, help='guest ELF')
    p.add_argument('--vcpus', type=int, default=1)
    p.add_argument('--append', default='', help='multiboot command line')
    p.add_argument('--expect-code', type=int, default=0,
                   help='debug-exit value the guest must write (process status (v << 1) | 1)')
    p.add_argument('--expect', action='append', default=[], help='text that must appear on a console line')
    p.add_argument('--timeout', type=float, default=240.0, help='seconds before the VMM is killed')
    p.add_argument('--qemu', action='store_true', help='run under qemu-system-x86_64 -accel kvm instead')
    p.add_argument('--qemu-binary', default='qemu-system-x86_64')
    p.add_argument('--memory-mib', type=int, default=64, help='guest RAM for QEMU')
    p.add_argument('--vmm-arg', action='append', default=[], help='extra argument for coalesce')
    args = p.parse_args()

    guest = os.path.basename(args.kernel).rsplit('.', 1)[0]
    label = '%s (%d vCPU%s, %s)' % (guest, args.vcpus, '' if args.vcpus == 1 else 's',
                                    'qemu' if args.qemu else 'coalesce')

    if not os.path.exists('/dev/kvm') or not os.access('/dev/kvm', os.R_OK | os.W_OK):
        print('FAIL %s: /dev/kvm is missing or not accessible; these tests need KVM' % label)
        return 1
    if not os.path.exists(args.kernel):
        print('FAIL %s: guest %s does not exist' % (label, args.kernel))
        return 1

    cmd = build_command(args)
    print('running:', ' '.join(cmd), flush=True)
    start = time.monotonic()
    timed_out = False
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=args.timeout)
        output, status = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        output, status, timed_out = e.stdout or b'', None, True
    except OSError as e:
        print('FAIL %s: cannot start %s: %s' % (label, cmd[0], e))
        return 1
    elapsed = time.monotonic() - start
    console = output.decode('utf-8', errors='replace').replace('\r', '')
    lines = console.split('\n')

    problems = []
    want_status = (args.expect_code << 1) | 1
    if timed_out:
        problems.append('timed out after %.0f s' % args.timeout)
    elif status != want_status:
        if status is not None and status > 0 and status & 1:
            got = 'status %d = debug-exit value %d' % (status, status >> 1)
        else:
            got = 'status %s (not a debug-exit status)' % status
        problems.append('%s, expected status %d (debug-exit value %d)' % (got, want_status, args.expect_code))
    expected = list(args.expect)
    if args.expect_code == 0:
        expected.append('%s: PASS' % guest)
    for text in expected:
        if not any(text in line for line in lines):
            problems.append('console lacks %r' % text)

    if problems:
        print('FAIL %s after %.1f s: %s' % (label, elapsed, '; '.join(problems)))
        print('----- console -----')
        print(console.rstrip('\n'))
        print('-------------------')
        return 1
    print('PASS %s in %.1f s' % (label, elapsed))
    for line in lines:  # the guest's own summary lines are useful in the test log
        if line.startswith(guest + ':'):
            print('  ' + line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
