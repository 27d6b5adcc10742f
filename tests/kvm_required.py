"""The one /dev/kvm policy of the test suite, for Python tests (tests/kvm_required.h is the same for C++).

A test that needs KVM is in the meson suite 'kvm'. It never skips: where /dev/kvm is unusable it fails, naming
why. scripts/test.sh runs that suite directly where /dev/kvm exists and in a nested KVM VM (scripts/kvm-vm)
where it does not, so a failure here means no KVM could be had at all.
"""
import os


def kvm_problem(path='/dev/kvm'):
    """None when /dev/kvm is usable, else why not."""
    if not os.path.exists(path):
        return ('%s does not exist (no KVM on this host: run through scripts/test.sh, which uses a nested '
                'KVM VM, or scripts/kvm-vm)' % path)
    if not os.access(path, os.R_OK | os.W_OK):
        return '%s is not readable and writable by this user' % path
    if os.path.isdir('/sys/module/kvm_pvm') and not any(
            os.path.isdir('/sys/module/' + m) for m in ('kvm_amd', 'kvm_intel')):
        return ('%s is PVM (kvm_pvm, without hardware virtualization), which does not run a stock Linux guest: '
                'run through scripts/test.sh, which uses a nested KVM VM, or scripts/kvm-vm' % path)
    return None
