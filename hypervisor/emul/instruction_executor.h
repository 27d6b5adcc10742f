// Gives semantics to a decoded instruction on a GuestCpu: updates registers, memory and extended state,
// advances RIP, and injects the exception the instruction raises (a fault leaves RIP and state untouched,
// a trap such as int3 retires the instruction first).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "hypervisor/emul/guest_cpu.h"
#include "hypervisor/emul/instruction.h"

namespace coalesce {

// How one instruction ended, as the semantic routines report it.
struct Completion {
  enum class Kind { kRetired, kFault, kTrap };
  Kind kind = Kind::kRetired;
  Fault fault;  // kFault: raised before the instruction changed anything; kTrap: delivered after it retired

  static Completion Retired() { return {}; }
  static Completion Faulted(const Fault& f) { return {Kind::kFault, f}; }
  static Completion Trapped(const Fault& f) { return {Kind::kTrap, f}; }
};

struct ExecutionResult {
  std::string mnemonic;                 // insn.name(): "cmpxchg16b", "xrstor64", ...
  std::optional<Fault> injected;        // the exception handed to the guest, if any
};

// kUnimplemented when the instruction has no semantics here (the caller stops the VM with a diagnostic);
// other errors are host-side failures of GuestCpu.
absl::StatusOr<ExecutionResult> ExecuteInstruction(GuestCpu& cpu, const Instruction& insn);

}  // namespace coalesce
