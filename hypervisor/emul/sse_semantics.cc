#include "hypervisor/emul/sse_semantics.h"

#include <algorithm>
#include <cstring>

#include "hypervisor/base/status_macros.h"
#include "hypervisor/emul/memory_operand.h"

namespace coalesce {
namespace {

constexpr uint32_t kXmmOffset = 160;  // XMM0 in the legacy region
constexpr uint32_t kMxcsrOffset = 24;

uint8_t* Xmm(ExtendedState& st, int n) { return st.image.data() + kXmmOffset + 16 * n; }

}  // namespace

absl::StatusOr<Completion> ExecuteSse(GuestCpu& cpu, const Instruction& insn, const RegisterState& regs) {
  if ((regs.cr0 & kCr0Em) || !(regs.cr4 & kCr4Osfxsr)) return Completion::Faulted(Fault::InvalidOpcode());
  if (regs.cr0 & kCr0Ts) return Completion::Faulted(Fault::DeviceNotAvailable());
  const int reg = insn.reg_field() | ((insn.rex & 4) ? 8 : 0);
  const int rm = insn.rm_field() | ((insn.rex & 1) ? 8 : 0);
  const bool aligned = insn.mnemonic == Mnemonic::kMovdqa || insn.mnemonic == Mnemonic::kMovaps;
  // 0F 7F / 0F 11 / 0F 29 store the register operand into r/m; the others load r/m into the register.
  const bool store_form = insn.opcode == 0x7f || insn.opcode == 0x11 || insn.opcode == 0x29;
  const bool user = regs.cpl == 3;

  uint64_t linear = 0;
  if (insn.has_memory_operand()) {
    const LinearAddress la = ComputeLinearAddress(regs, insn, 16);
    if (la.fault) return Completion::Faulted(*la.fault);
    if (aligned && (la.address & 15) != 0) return Completion::Faulted(Fault::GeneralProtection(0));
    linear = la.address;
  }
  ASSIGN_OR_RETURN(ExtendedState st, cpu.GetExtendedState());
  uint8_t source[16];
  if (store_form) {
    std::memcpy(source, Xmm(st, reg), 16);
    if (insn.has_memory_operand()) {
      ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Write(linear, source, {.write = true, .user = user}));
      return f ? Completion::Faulted(*f) : Completion::Retired();
    }
    std::memcpy(Xmm(st, rm), source, 16);
  } else {
    if (insn.has_memory_operand()) {
      ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Read(linear, source, {.write = false, .user = user}));
      if (f) return Completion::Faulted(*f);
    } else {
      std::memcpy(source, Xmm(st, rm), 16);
    }
    uint8_t* dst = Xmm(st, reg);
    if (insn.mnemonic == Mnemonic::kPxor) {
      for (int i = 0; i < 16; ++i) dst[i] ^= source[i];
    } else {
      std::memcpy(dst, source, 16);
    }
  }
  // The SSE component is now in use (XSTATE_BV bit 1 of the image).
  st.image[kXsaveHeaderOffset] |= 0x2;
  RETURN_IF_ERROR(cpu.SetExtendedState(st));
  return Completion::Retired();
}

absl::StatusOr<Completion> ExecuteMxcsr(GuestCpu& cpu, const Instruction& insn, const RegisterState& regs) {
  if ((regs.cr0 & kCr0Em) || !(regs.cr4 & kCr4Osfxsr)) return Completion::Faulted(Fault::InvalidOpcode());
  if (regs.cr0 & kCr0Ts) return Completion::Faulted(Fault::DeviceNotAvailable());
  const LinearAddress la = ComputeLinearAddress(regs, insn, 4);
  if (la.fault) return Completion::Faulted(*la.fault);
  const bool user = regs.cpl == 3;
  ASSIGN_OR_RETURN(ExtendedState st, cpu.GetExtendedState());
  if (st.image.size() < kXsaveHeaderOffset + 8) return absl::InternalError("extended state image too small");
  uint8_t value[4];
  if (insn.mnemonic == Mnemonic::kStmxcsr) {
    std::memcpy(value, st.image.data() + kMxcsrOffset, 4);
    ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Write(la.address, value, {.write = true, .user = user}));
    return f ? Completion::Faulted(*f) : Completion::Retired();
  }
  ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Read(la.address, value, {.write = false, .user = user}));
  if (f) return Completion::Faulted(*f);
  uint32_t mxcsr;
  std::memcpy(&mxcsr, value, 4);
  if (mxcsr & ~cpu.xsave_layout().mxcsr_mask) return Completion::Faulted(Fault::GeneralProtection(0));
  std::memcpy(st.image.data() + kMxcsrOffset, value, 4);
  // MXCSR is saved with the SSE component: a non-default value puts it in use.
  if (mxcsr != kMxcsrDefault) st.image[kXsaveHeaderOffset] |= 0x2;
  RETURN_IF_ERROR(cpu.SetExtendedState(st));
  return Completion::Retired();
}

}  // namespace coalesce
