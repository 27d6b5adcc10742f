#!/usr/bin/env python3
"""Runs one test guest under coalesce (or QEMU with --qemu) and checks its verdict.

A guest passes when the VMM exits with status (code << 1) | 1 for the expected debug-exit code, its console
shows every --expect text on some line and, unless --expect-code is given, the code is 0 and the console
shows "<guest>: PASS". On failure the whole console is printed.

Exit status: 0 pass, 1 fail. A missing /dev/kvm is a failure, never a skip. In the nested KVM VM under
multi-threaded TCG a triple fault without the guest's verdict, and a QEMU reference run that printed nothing of
the guest before its timeout, are run once more (emulator_fault); the second run's result stands.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from kvm_required import kvm_problem  # noqa: E402


def vmm_command(coalesce, kernel, vcpus, append='', qemu=False, qemu_binary='qemu-system-x86_64',
                memory_mib=64, vmm_args=()):
    """The command line that boots `kernel` under coalesce, or under QEMU (-accel kvm) with qemu=True."""
    if qemu:
        cmd = [shutil.which(qemu_binary) or qemu_binary, '-accel', 'kvm', '-m', str(memory_mib),
               '-smp', str(vcpus), '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-reboot',
               '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04', '-kernel', kernel]
        if append:
            cmd += ['-append', append]
        return cmd
    cmd = [coalesce, 'run', '--kernel', kernel, '--vcpus', str(vcpus)]
    if append:
        cmd += ['--append', append]
    return cmd + list(vmm_args)


def run_vmm(cmd, timeout):
    """Runs a VMM command. Returns (console text, exit status or None on timeout, seconds, start error)."""
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout)
        output, status = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        output, status = e.stdout or b'', None
    except OSError as e:
        return '', None, time.monotonic() - start, 'cannot start %s: %s' % (cmd[0], e)
    console = output.decode('utf-8', errors='replace').replace('\r', '')
    return console, status, time.monotonic() - start, None


def describe_status(status):
    if status is None:
        return 'no exit status (timed out)'
    if status > 0 and status & 1:
        return 'status %d = debug-exit value %d' % (status, status >> 1)
    if status < 0:
        return 'killed by signal %d' % -status
    return 'status %d (not a debug-exit status)' % status


# How each VMM ends a guest that triple-faulted: QEMU with -no-reboot exits 0, coalesce exits 6.
TRIPLE_FAULT_STATUS = {True: 0, False: 6}


def emulator_fault(qemu, status, console, guest):
    """Why a run that ended in a triple fault without the guest's verdict may be rerun once, or None.

    Only under the nested KVM VM's multi-threaded TCG, where QEMU's emulation of the nested host itself
    triple-faults such guests about 1 run in 30 (docs/NESTED_KVM.md): the guest's own exception handlers print
    a verdict for every fault they can see, so a silent triple fault there is not the guest's or the VMM's."""
    if os.environ.get('COALESCE_NESTED_TCG_THREAD') != 'multi':
        return None
    lines = console.split('\n')
    # QEMU's 4-vCPU reference runs there have also hung before the guest printed its first line (the nested kernel
    # reporting RCU stalls at the time; a clean-clone run on 2026-12-07): the guest never ran, so it says nothing
    # of it.
    if qemu and status is None and not any(line.startswith(guest + ':') for line in lines):
        return 'QEMU ran none of the guest before the timeout under multi-threaded TCG (the nested host\'s known fault)'
    if status != TRIPLE_FAULT_STATUS[qemu]:
        return None
    if any(line.startswith(guest + ': PASS') or line.startswith(guest + ': FAIL') for line in lines):
        return None
    return 'the guest triple-faulted without a verdict under multi-threaded TCG (the nested host\'s known fault)'


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('coalesce', help='path of the coalesce executable (unused with --qemu)')
    p.add_argument('--kernel', required=True, help='guest ELF')
    p.add_argument('--vcpus', type=int, default=1)
    p.add_argument('--append', default='', help='multiboot command line')
    p.add_argument('--expect-code', type=int, default=None,
                   help='debug-exit value the guest must write (process status (v << 1) | 1); without it the '
                        'guest must write 0 and print "<guest>: PASS"')
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
    problem = kvm_problem()
    if problem:
        print('FAIL %s: %s; these tests need KVM' % (label, problem))
        return 1
    if not os.path.exists(args.kernel):
        print('FAIL %s: guest %s does not exist' % (label, args.kernel))
        return 1

    cmd = vmm_command(args.coalesce, args.kernel, args.vcpus, args.append, args.qemu, args.qemu_binary,
                      args.memory_mib, args.vmm_arg)
    print('running:', ' '.join(cmd), flush=True)
    console, status, elapsed, error = run_vmm(cmd, args.timeout)
    fault = None if error else emulator_fault(args.qemu, status, console, guest)
    if fault:
        print('%s: %s after %.1f s; running it once more. Its console:' % (label, fault, elapsed))
        print(console.rstrip('\n'), flush=True)
        console, status, elapsed, error = run_vmm(cmd, args.timeout)
    if error:
        print('FAIL %s: %s' % (label, error))
        return 1
    lines = console.split('\n')

    problems = []
    code = 0 if args.expect_code is None else args.expect_code
    want_status = (code << 1) | 1
    if status is None:
        problems.append('timed out after %.0f s' % args.timeout)
    elif status != want_status:
        problems.append('%s, expected status %d (debug-exit value %d)' %
                        (describe_status(status), want_status, code))
    expected = list(args.expect)
    if args.expect_code is None:
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
