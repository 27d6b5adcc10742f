// MSR values that belong to the CPU model rather than to boot: set once per vCPU, on every node.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "hypervisor/kvm/vcpu_fd.h"

namespace coalesce {

// On AMD hosts, HWCR.TscFreqSel (bit 24): the TSC counts at the P0 frequency, as on the real part. KVM
// starts HWCR at 0, and Linux then warns "[Firmware Bug]: TSC doesn't count with P0 frequency!". KVM
// accepts the bit from user space since Linux 6.7. An older KVM refuses it and logs "Unhandled WRMSR" in the
// host's kernel log, so on a host kernel before 6.7 it is not written at all (the guest's warning is
// harmless); where the write is refused anyway it is not tried again in this process.
void ApplyModelMsrs(VcpuFd& fd, uint32_t vcpu_id);

// Whether this host's CPU is AMD's (CPUID vendor "AuthenticAMD").
bool HostCpuIsAmd();

// Whether a host kernel release (uname -r, e.g. "6.1.0-57-amd64") is at least major.minor. Unparsable: true.
bool KernelReleaseAtLeast(std::string_view release, int major, int minor);

}  // namespace coalesce
