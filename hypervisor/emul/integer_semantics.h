// Plain integer instructions (ALU, shifts and rotates, multiply/divide, bit scans and counts, bit tests,
// moves, cmov/setcc, bswap, lea, ...), in register and memory forms. They run natively on the host through
// native_stub.h on a copy of the guest registers, with a memory operand staged through a host buffer and read
// and written through GuestCpu (so paging, faults and permissions are the guest's). An explicit allowlist
// keeps out everything with other side effects: stack, branches, segment/control registers, I/O, string ops,
// privileged and system instructions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "hypervisor/emul/guest_cpu.h"
#include "hypervisor/emul/instruction.h"
#include "hypervisor/emul/instruction_executor.h"

namespace coalesce {

struct IntegerForm {
  enum class Access : uint8_t { kNone, kRead, kWrite, kReadWrite };
  Access access = Access::kNone;  // what the instruction does with its ModRM memory operand, if it has one
  uint8_t size = 0;               // the memory operand's size in bytes
  bool lockable = false;          // LOCK is legal with a memory destination
  bool register_only = false;     // the memory form is not handled (bt with a register bit offset)
  bool divide = false;            // div/idiv: #DE is checked before running
  bool lea = false;               // computed here, never run natively
  std::string name;               // "popcnt", "add", ... for counters
};

// The form of an instruction the integer path handles, or nullopt.
std::optional<IntegerForm> ClassifyInteger(const Instruction& insn);

// Executes an instruction ClassifyInteger accepted. Updates `regs` (GPRs, arithmetic flags); the executor
// advances RIP.
absl::StatusOr<Completion> ExecuteInteger(GuestCpu& cpu, const Instruction& insn, const IntegerForm& form,
                                          RegisterState& regs);

}  // namespace coalesce
