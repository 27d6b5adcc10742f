#include "hypervisor/emul/memory_operand.h"

namespace coalesce {

bool IsCanonical(uint64_t address, uint64_t cr4) {
  const unsigned bits = (cr4 & kCr4La57) ? 57 : 48;
  const int64_t extended = static_cast<int64_t>(address << (64 - bits)) >> (64 - bits);
  return static_cast<uint64_t>(extended) == address;
}

LinearAddress ComputeLinearAddress(const RegisterState& regs, const Instruction& insn, uint64_t size) {
  const MemoryOperand& m = insn.memory;
  uint64_t ea = static_cast<uint64_t>(m.displacement);
  if (m.rip_relative) ea += regs.rip + insn.length;
  if (m.base != kNoRegister) ea += regs.gpr[m.base];
  if (m.index != kNoRegister) ea += regs.gpr[m.index] * m.scale;
  if (insn.address_size_override) ea &= 0xffffffffull;

  LinearAddress out;
  out.address = ea;
  if (m.segment == SegmentReg::kFs || m.segment == SegmentReg::kGs) {
    out.address += regs.segment_base[static_cast<size_t>(m.segment)];
  }
  const uint64_t last = out.address + (size == 0 ? 0 : size - 1);
  if (!IsCanonical(out.address, regs.cr4) || !IsCanonical(last, regs.cr4)) {
    out.fault = m.segment == SegmentReg::kSs ? Fault::StackFault(0) : Fault::GeneralProtection(0);
  }
  return out;
}

}  // namespace coalesce
