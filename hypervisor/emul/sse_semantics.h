// A few SSE instructions on XMM registers held in the extended-state image: pxor, movdqu/movdqa and
// movups/movaps (128-bit loads, stores and register moves). PVM's emulator fails on them inside a batch.
#pragma once

#include "absl/status/statusor.h"
#include "hypervisor/emul/guest_cpu.h"
#include "hypervisor/emul/instruction.h"
#include "hypervisor/emul/instruction_executor.h"

namespace coalesce {

absl::StatusOr<Completion> ExecuteSse(GuestCpu& cpu, const Instruction& insn, const RegisterState& regs);

// ldmxcsr m32 / stmxcsr m32: MXCSR in the extended state; #GP(0) for bits outside MXCSR_MASK.
absl::StatusOr<Completion> ExecuteMxcsr(GuestCpu& cpu, const Instruction& insn, const RegisterState& regs);

}  // namespace coalesce
