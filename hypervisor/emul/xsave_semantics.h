// fxsave/fxrstor and the XSAVE family (xsave, xsaveopt, xsavec, xsaves, xrstor, xrstors), standard and
// compacted formats, on the standard-format state image of GuestCpu::GetExtendedState.
#pragma once

#include "absl/status/statusor.h"
#include "hypervisor/emul/guest_cpu.h"
#include "hypervisor/emul/instruction.h"
#include "hypervisor/emul/instruction_executor.h"

namespace coalesce {

absl::StatusOr<Completion> ExecuteFxsaveFxrstor(GuestCpu& cpu, const Instruction& insn, const RegisterState& regs);
absl::StatusOr<Completion> ExecuteXsaveFamily(GuestCpu& cpu, const Instruction& insn, const RegisterState& regs);

}  // namespace coalesce
