#include "hypervisor/emul/instruction_executor.h"

#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/emul/cmpxchg_semantics.h"
#include "hypervisor/emul/integer_semantics.h"
#include "hypervisor/emul/simd_semantics.h"
#include "hypervisor/emul/sse_semantics.h"
#include "hypervisor/emul/xsave_semantics.h"

namespace coalesce {
namespace {

// xgetbv: ECX=0 reads XCR0, ECX=1 reads XINUSE & XCR0 (where the CPU supports it).
absl::StatusOr<Completion> ExecuteXgetbv(GuestCpu& cpu, RegisterState& regs) {
  if (!(regs.cr4 & kCr4Osxsave)) return Completion::Faulted(Fault::InvalidOpcode());
  ASSIGN_OR_RETURN(ExtendedState st, cpu.GetExtendedState());
  uint64_t value = 0;
  const uint32_t index = static_cast<uint32_t>(regs.gpr[1]);
  if (index == 0) {
    value = st.xcr0;
  } else if (index == 1 && cpu.xsave_layout().has_xsavec && st.image.size() >= kXsaveExtendedStart) {
    uint64_t xinuse = 0;
    std::copy_n(st.image.begin() + kXsaveHeaderOffset, 8, reinterpret_cast<uint8_t*>(&xinuse));
    value = xinuse & st.xcr0;
  } else {
    return Completion::Faulted(Fault::GeneralProtection(0));
  }
  regs.gpr[0] = value & 0xffffffffull;
  regs.gpr[2] = value >> 32;
  return Completion::Retired();
}

// fwait: #NM when CR0.MP and CR0.TS; #MF when an unmasked x87 exception is pending (FSW.ES); else nothing.
absl::StatusOr<Completion> ExecuteFwait(GuestCpu& cpu, const RegisterState& regs) {
  if ((regs.cr0 & kCr0Mp) && (regs.cr0 & kCr0Ts)) return Completion::Faulted(Fault::DeviceNotAvailable());
  ASSIGN_OR_RETURN(ExtendedState st, cpu.GetExtendedState());
  if (st.image.size() >= 4) {
    const uint16_t fsw = static_cast<uint16_t>(st.image[2] | (st.image[3] << 8));
    if (fsw & 0x80) return Completion::Faulted(Fault{kVectorX87, std::nullopt, 0});
  }
  return Completion::Retired();
}

absl::StatusOr<Completion> Dispatch(GuestCpu& cpu, const Instruction& insn, RegisterState& regs,
                                    const std::optional<IntegerForm>& integer) {
  // Plain integer instructions check LOCK themselves (many of them are lockable).
  if (integer) return ExecuteInteger(cpu, insn, *integer, regs);
  // LOCK is only legal on read-modify-write instructions with a memory destination.
  if (insn.lock && insn.mnemonic != Mnemonic::kCmpxchg8b && insn.mnemonic != Mnemonic::kCmpxchg16b) {
    return Completion::Faulted(Fault::InvalidOpcode());
  }
  switch (insn.mnemonic) {
    case Mnemonic::kInt3:
      return Completion::Trapped(Fault::Breakpoint());
    case Mnemonic::kInt1:
      return Completion::Trapped(Fault{kVectorDebug, std::nullopt, 0});
    case Mnemonic::kUd2:
      return Completion::Faulted(Fault::InvalidOpcode());
    case Mnemonic::kCmpxchg8b:
    case Mnemonic::kCmpxchg16b:
      return ExecuteCmpxchg8b16b(cpu, insn, regs);
    case Mnemonic::kFxsave:
    case Mnemonic::kFxrstor:
      return ExecuteFxsaveFxrstor(cpu, insn, regs);
    case Mnemonic::kXsave:
    case Mnemonic::kXrstor:
    case Mnemonic::kXsaveopt:
    case Mnemonic::kXsavec:
    case Mnemonic::kXsaves:
    case Mnemonic::kXrstors:
      return ExecuteXsaveFamily(cpu, insn, regs);
    case Mnemonic::kXgetbv:
      return ExecuteXgetbv(cpu, regs);
    case Mnemonic::kLfence:
    case Mnemonic::kMfence:
    case Mnemonic::kSfence:
      // Our own accesses to guest memory are already ordered by the syscalls around them; a full fence
      // keeps the guarantee for other threads touching the same RAM.
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      return Completion::Retired();
    case Mnemonic::kLdmxcsr:
    case Mnemonic::kStmxcsr:
      return ExecuteMxcsr(cpu, insn, regs);
    case Mnemonic::kFwait:
      return ExecuteFwait(cpu, regs);
    case Mnemonic::kClac:
    case Mnemonic::kStac:
      if (regs.cpl != 0) return Completion::Faulted(Fault::InvalidOpcode());
      if (insn.mnemonic == Mnemonic::kStac) {
        regs.rflags |= kRflagsAc;
      } else {
        regs.rflags &= ~kRflagsAc;
      }
      return Completion::Retired();
    case Mnemonic::kPxor:
    case Mnemonic::kMovdqu:
    case Mnemonic::kMovdqa:
    case Mnemonic::kMovups:
    case Mnemonic::kMovaps:
      return ExecuteSse(cpu, insn, regs);
    case Mnemonic::kSimd:
      return ExecuteSimd(cpu, insn, regs);
    case Mnemonic::kIntN:
    case Mnemonic::kUnknown:
      break;
  }
  return absl::UnimplementedError(absl::StrFormat("no semantics for %s (opcode %s)", insn.name(), insn.OpcodeText()));
}

}  // namespace

absl::StatusOr<ExecutionResult> ExecuteInstruction(GuestCpu& cpu, const Instruction& insn) {
  ASSIGN_OR_RETURN(RegisterState regs, cpu.GetRegisters());
  if (!regs.long_mode_64) {
    return absl::UnimplementedError(absl::StrFormat("%s outside 64-bit mode is not handled", insn.name()));
  }
  const std::optional<IntegerForm> integer = ClassifyInteger(insn);
  ASSIGN_OR_RETURN(Completion done, Dispatch(cpu, insn, regs, integer));
  ExecutionResult result{integer ? integer->name : insn.name(), std::nullopt};
  if (done.kind == Completion::Kind::kFault) {
    // A fault leaves every register as it was; the exception handler sees RIP at the instruction.
    RETURN_IF_ERROR(cpu.InjectException(done.fault));
    result.injected = done.fault;
    return result;
  }
  regs.rip += insn.length;
  regs.rflags &= ~kRflagsRf;  // RF is cleared once an instruction retires
  RETURN_IF_ERROR(cpu.SetRegisters(regs));
  if (done.kind == Completion::Kind::kTrap) {
    RETURN_IF_ERROR(cpu.InjectException(done.fault));
    result.injected = done.fault;
  }
  return result;
}

}  // namespace coalesce
