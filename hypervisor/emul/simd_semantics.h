// SSE/AVX/AVX-512 instructions (simd_forms.h decides which) completed by running them natively on the host
// CPU against the guest's vector state: the guest's XSAVE image is loaded with XRSTOR around the copied
// instruction and saved back, its memory operand staged through a buffer (read, or read-modify-written for
// stores, through GuestCpu so paging permissions and A/D bits hold). The host CPU is the reference for
// every result bit. It is the only way to run what PVM's emulator cannot: on PVM the guest's CPUID shows
// the host's vector extensions whatever the VMM asks (docs/EMULATION.md), so a guest kernel uses them.
#pragma once

#include "absl/status/statusor.h"
#include "hypervisor/emul/guest_cpu.h"
#include "hypervisor/emul/instruction.h"
#include "hypervisor/emul/instruction_executor.h"

namespace coalesce {

absl::StatusOr<Completion> ExecuteSimd(GuestCpu& cpu, const Instruction& insn, RegisterState& regs);

}  // namespace coalesce
