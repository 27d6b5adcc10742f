#!/usr/bin/env python3
"""IPI round-trip benchmark: the ipi_bench guest (2 vCPUs) under coalesce and under
qemu-system-x86_64 -accel kvm (in-kernel irqchip) in the same run. The last line printed is one JSON object:
{"name": "ipi_round_trip", "value": <coalesce median cycles>, "unit": "tsc_cycles", "baseline": <qemu median>,
 "ratio": value / baseline, ...}. A side that fails reports null and an "errors" entry; the exit status is
then 1.
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests', 'guests'))
import run_guest  # noqa: E402  (shares the VMM command lines with the test runner)

RESULT = re.compile(r'ipi_bench: rounds=(\d+) median=(\d+) mean=(\d+) min=(\d+) p90=(\d+) p99=(\d+) max=(\d+) '
                    r'tsc_khz=(\d+)')
FIELDS = ('rounds', 'median', 'mean', 'min', 'p90', 'p99', 'max', 'tsc_khz')


def measure(args, qemu):
    """Runs the guest once; returns (result dict or None, error text or None)."""
    cmd = run_guest.vmm_command(args.coalesce, args.kernel, args.vcpus,
                                'rounds=%d warmup=%d' % (args.rounds, args.warmup), qemu=qemu)
    print('running:', ' '.join(cmd), flush=True)
    console, status, elapsed, error = run_guest.run_vmm(cmd, args.timeout)
    if error:
        return None, error
    match = None
    for line in console.split('\n'):
        match = RESULT.search(line) or match
    if status != 1 or not match:
        print(console.rstrip('\n'))
        return None, '%s, %s' % (run_guest.describe_status(status),
                                 'result line found' if match else 'no result line')
    result = dict(zip(FIELDS, (int(v) for v in match.groups())))
    result['median_us'] = round(result['median'] / result['tsc_khz'] * 1000.0, 2) if result['tsc_khz'] else None
    result['wall_s'] = round(elapsed, 1)
    print('%s: median %d cycles (%s us), mean %d, p99 %d over %d round trips' %
          ('qemu' if qemu else 'coalesce', result['median'], result['median_us'], result['mean'],
           result['p99'], result['rounds']), flush=True)
    return result, None


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('coalesce', help='path of the coalesce executable')
    p.add_argument('--kernel', required=True, help='the ipi_bench guest ELF')
    p.add_argument('--vcpus', type=int, default=2)
    p.add_argument('--rounds', type=int, default=500)
    p.add_argument('--warmup', type=int, default=20)
    p.add_argument('--timeout', type=float, default=600.0, help='seconds per VMM run')
    args = p.parse_args()

    errors = {}
    problem = run_guest.kvm_problem()
    if problem:
        errors['kvm'] = problem
        mine = base = None
    else:
        mine, err = measure(args, qemu=False)
        if err:
            errors['coalesce'] = err
        base, err = measure(args, qemu=True)
        if err:
            errors['qemu'] = err
    value = mine['median'] if mine else None
    baseline = base['median'] if base else None
    report = {
        'name': 'ipi_round_trip',
        'value': value,
        'unit': 'tsc_cycles',
        'baseline': baseline,
        'ratio': round(value / baseline, 3) if value is not None and baseline else None,
        'vcpus': args.vcpus,
        'rounds': args.rounds,
        'coalesce': mine,
        'qemu': base,
    }
    if errors:
        report['errors'] = errors
    print(json.dumps(report, sort_keys=False))
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
