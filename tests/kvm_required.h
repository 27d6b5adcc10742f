// The one /dev/kvm policy of the test suite, for C++ tests (tests/kvm_required.py is the same for Python).
// A test that needs KVM is in the meson suite 'kvm'. It never skips: where /dev/kvm is unusable it fails,
// naming why. scripts/test.sh runs that suite directly where /dev/kvm exists, and in a nested KVM VM
// (scripts/kvm-vm) where it does not, so a failure here means no KVM could be had at all.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace coalesce::testing {

// Empty when /dev/kvm can be opened for reading and writing and is not PVM; else why not.
inline std::string KvmProblem(const char* path = "/dev/kvm") {
  if (::access(path, F_OK) != 0) {
    return std::string(path) + " does not exist (no KVM on this host: run through scripts/test.sh, which "
                               "uses a nested KVM VM, or scripts/kvm-vm)";
  }
  if (::access(path, R_OK | W_OK) != 0) {
    return std::string(path) + " is not readable and writable by this user: " + std::strerror(errno);
  }
  if (::access("/sys/module/kvm_pvm", F_OK) == 0 && ::access("/sys/module/kvm_amd", F_OK) != 0 &&
      ::access("/sys/module/kvm_intel", F_OK) != 0) {
    return std::string(path) + " is PVM (kvm_pvm, without hardware virtualization), which does not run a stock "
                               "Linux guest: run through scripts/test.sh, which uses a nested KVM VM, or scripts/kvm-vm";
  }
  return {};
}

}  // namespace coalesce::testing
