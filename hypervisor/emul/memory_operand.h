// Effective and linear address of an instruction's memory operand in 64-bit mode.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "hypervisor/emul/guest_cpu.h"
#include "hypervisor/emul/instruction.h"

namespace coalesce {

struct LinearAddress {
  uint64_t address = 0;
  std::optional<Fault> fault;  // #GP(0) / #SS(0) when [address, address+size) is not canonical
};

// Computes the linear address of `insn`'s ModRM memory operand (which must exist) for an access of `size`
// bytes: base + index*scale + displacement (RIP-relative from the next instruction), truncated to 32 bits
// under an address-size override, plus the FS/GS base (other segment bases are 0 in 64-bit mode).
LinearAddress ComputeLinearAddress(const RegisterState& regs, const Instruction& insn, uint64_t size);

// Re-encodes `insn` (legacy, VEX or EVEX) with its memory operand as [rip+disp32], for the native stub to
// point at its private buffer; segment, address-size and LOCK prefixes are dropped (the address is already
// computed) and the index/base extension bits cleared. Appends to `out`; returns the disp32's offset in it.
size_t RewriteMemoryOperandRipRelative(const Instruction& insn, std::vector<uint8_t>& out);

// True when `address` is canonical for the paging mode (48-bit, or 57-bit with CR4.LA57).
bool IsCanonical(uint64_t address, uint64_t cr4);

}  // namespace coalesce
