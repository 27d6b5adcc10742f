#!/usr/bin/env python3
"""Unit tests for run_guest.py's decisions that need no VM: which ended runs count as the nested host's fault."""
import os
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_guest  # noqa: E402

SILENT = 'lapic_timer: timer clock 62276 kHz after divide-by-16\n'


class EmulatorFaultTest(unittest.TestCase):
    def fault(self, tcg_thread, qemu, status, console):
        env = {} if tcg_thread is None else {'COALESCE_NESTED_TCG_THREAD': tcg_thread}
        with mock.patch.dict(os.environ, env, clear=True):
            return run_guest.emulator_fault(qemu, status, console, 'lapic_timer')

    def test_silent_triple_fault_under_multi_threaded_tcg_is_rerun(self):
        self.assertIn('triple-faulted', self.fault('multi', True, 0, SILENT))
        self.assertIn('triple-faulted', self.fault('multi', False, 6, SILENT))

    def test_a_verdict_stands(self):
        self.assertIsNone(self.fault('multi', True, 0, SILENT + 'lapic_timer: FAIL (exit code 2): late\n'))
        self.assertIsNone(self.fault('multi', True, 0, SILENT + 'lapic_timer: PASS\n'))

    def test_other_endings_stand(self):
        self.assertIsNone(self.fault('multi', True, 3, SILENT))  # debug-exit 1
        self.assertIsNone(self.fault('multi', False, 0, SILENT))  # coalesce's ACPI power-off
        self.assertIsNone(self.fault('multi', True, None, SILENT))  # timed out

    def test_only_under_multi_threaded_tcg(self):
        self.assertIsNone(self.fault('single', True, 0, SILENT))
        self.assertIsNone(self.fault(None, True, 0, SILENT))  # real KVM: a triple fault is a failure


if __name__ == '__main__':
    unittest.main()
