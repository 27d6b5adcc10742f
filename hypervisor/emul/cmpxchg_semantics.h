// cmpxchg8b / cmpxchg16b (0F C7 /1), with or without LOCK: always performed as one host atomic operation.
#pragma once

#include "absl/status/statusor.h"
#include "hypervisor/emul/guest_cpu.h"
#include "hypervisor/emul/instruction.h"
#include "hypervisor/emul/instruction_executor.h"

namespace coalesce {

// Updates `regs` (RAX/RDX on failure, ZF) on success; the caller commits them.
absl::StatusOr<Completion> ExecuteCmpxchg8b16b(GuestCpu& cpu, const Instruction& insn, RegisterState& regs);

}  // namespace coalesce
