// Everything KVM holds for one vCPU, captured from a vCPU stopped at an exit and restored into another vCPU
// (in another VM, on this host or, encoded, on another node): the first step of live vCPU migration
// (issue 12). The guest must not see a change of CPU: general and special registers, FPU/SSE/AVX state
// (XSAVE image), XCR0, debug registers, pending exceptions, interrupts and NMIs (vcpu events), the MSRs a
// kernel programs (syscall entry, GS base, PAT, ...) and the TSC offset; and the user-space local APIC's state
// (hypervisor/irq/local_apic: no in-kernel irqchip), which the caller saves and loads beside it.
// docs/COALESCENCE.md.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/irq/local_apic.h"
#include "hypervisor/kvm/vcpu_fd.h"

namespace coalesce {

struct VcpuState {
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::vector<uint8_t> xsave;  // the KVM_GET_XSAVE image
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_vcpu_events events{};
  std::vector<std::pair<uint32_t, uint64_t>> msrs;  // those of kMigratedMsrs this KVM has
  std::optional<int64_t> tsc_offset;                 // where KVM has the TSC-offset attribute
  LocalApicState lapic{};                            // the user-space APIC (LocalApic::SaveState)
};

// The MSRs carried: SYSENTER (0x174-0x176), PAT, MISC_ENABLE, STAR/LSTAR/CSTAR/SFMASK, KERNEL_GS_BASE, TSC_AUX.
// FS and GS bases travel in sregs; EFER too.
extern const std::vector<uint32_t> kMigratedMsrs;

// Completes an I/O or MMIO exit still pending (KVM finishes it on the next KVM_RUN: one with immediate_exit
// set returns at once), then reads everything. The vCPU's thread must not be running it.
absl::StatusOr<VcpuState> CaptureVcpuState(VcpuFd& vcpu);

// Writes `state` into `vcpu`, which has the same CPUID as the source (the node builder gives every vCPU of a
// VM one CPU model). Order matters: MSRs after sregs (EFER), events last.
absl::Status RestoreVcpuState(VcpuFd& vcpu, const VcpuState& state);

// The wire form (between nodes of one VM, always x86-64 Linux hosts): a version byte, then each part
// length-prefixed; Decode checks every length.
std::vector<uint8_t> EncodeVcpuState(const VcpuState& state);
absl::StatusOr<VcpuState> DecodeVcpuState(std::span<const uint8_t> bytes);

}  // namespace coalesce
