#include "hypervisor/emul/cmpxchg_semantics.h"

#include <cstring>

#include "hypervisor/emul/memory_operand.h"

namespace coalesce {

absl::StatusOr<Completion> ExecuteCmpxchg8b16b(GuestCpu& cpu, const Instruction& insn, RegisterState& regs) {
  if (!insn.has_memory_operand()) return Completion::Faulted(Fault::InvalidOpcode());
  const size_t half = insn.rex_w() ? 8 : 4;
  const size_t size = 2 * half;
  const LinearAddress la = ComputeLinearAddress(regs, insn, size);
  if (la.fault) return Completion::Faulted(*la.fault);
  // cmpxchg16b demands a 16-byte aligned operand; cmpxchg8b takes any alignment.
  if (size == 16 && (la.address & 15) != 0) return Completion::Faulted(Fault::GeneralProtection(0));

  uint8_t expected[16], desired[16], old[16];
  std::memcpy(expected, &regs.gpr[0], half);         // rAX: low half
  std::memcpy(expected + half, &regs.gpr[2], half);  // rDX: high half
  std::memcpy(desired, &regs.gpr[3], half);          // rBX
  std::memcpy(desired + half, &regs.gpr[1], half);   // rCX
  auto r = cpu.CompareExchange(la.address, {expected, size}, {desired, size}, {old, size},
                               {.write = true, .user = regs.cpl == 3});
  if (!r.ok()) return r.status();
  if (r->has_value()) return Completion::Faulted(**r);

  if (std::memcmp(old, expected, size) == 0) {
    regs.rflags |= kRflagsZf;
  } else {
    regs.rflags &= ~kRflagsZf;
    // A 32-bit destination (cmpxchg8b) zero-extends into the 64-bit register, as every 32-bit write does.
    uint64_t lo = 0, hi = 0;
    std::memcpy(&lo, old, half);
    std::memcpy(&hi, old + half, half);
    regs.gpr[0] = lo;
    regs.gpr[2] = hi;
  }
  return Completion::Retired();
}

}  // namespace coalesce
