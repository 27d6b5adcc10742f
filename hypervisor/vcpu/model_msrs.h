// MSR values that belong to the CPU model rather than to boot: set once per vCPU, on every node.
#pragma once

#include "absl/status/status.h"
#include "hypervisor/kvm/vcpu_fd.h"

namespace coalesce {

// On AMD hosts, HWCR.TscFreqSel (bit 24): the TSC counts at the P0 frequency, as on the real part. KVM
// starts HWCR at 0, and Linux then warns "[Firmware Bug]: TSC doesn't count with P0 frequency!". KVM
// accepts the bit from user space since Linux 6.7; on an older KVM the error is logged and ignored.
void ApplyModelMsrs(VcpuFd& fd, uint32_t vcpu_id);

}  // namespace coalesce
