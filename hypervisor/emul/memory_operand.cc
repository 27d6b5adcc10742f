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

size_t RewriteMemoryOperandRipRelative(const Instruction& in, std::vector<uint8_t>& out) {
  const size_t modrm_at = in.modrm_offset();
  if (in.encoding != Encoding::kLegacy) {
    const size_t vex_at = modrm_at - 1 - in.vex_size;
    for (size_t i = 0; i < in.vex_size; ++i) {
      uint8_t b = in.bytes[vex_at + i];
      // Byte 1 of C4 and of 62 holds the inverted X and B bits: set = "no extension".
      if (i == 1 && in.vex_size >= 3) b |= 0x60;
      out.push_back(b);
    }
    out.push_back(in.opcode);
  } else {
    const size_t opcode_len = in.map == OpcodeMap::kPrimary ? 1 : (in.map == OpcodeMap::k0F ? 2 : 3);
    const size_t opcode_at = modrm_at - opcode_len;
    for (size_t i = 0; i < opcode_at; ++i) {
      const uint8_t b = in.bytes[i];
      if (b == 0xf2 || b == 0xf3 || b == 0x66) out.push_back(b);
    }
    if (in.rex != 0) out.push_back(static_cast<uint8_t>(in.rex & ~0x3));  // X and B address nothing now
    out.insert(out.end(), in.bytes.begin() + opcode_at, in.bytes.begin() + modrm_at);
  }
  out.push_back(static_cast<uint8_t>((in.modrm & 0x38) | 0x05));
  const size_t disp_at = out.size();
  out.insert(out.end(), 4, 0);
  out.insert(out.end(), in.bytes.begin() + in.length - in.immediate_size, in.bytes.begin() + in.length);
  return disp_at;
}

}  // namespace coalesce
