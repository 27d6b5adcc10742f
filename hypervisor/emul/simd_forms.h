// Which SSE/AVX/AVX-512 instructions may run natively on the host for a guest (simd_semantics.h), and what
// their memory operand is. Pure: decided from the decoded instruction alone, unit-tested.
//
// The allowlist is "data processing on vector registers with at most one explicit ModRM memory operand":
// moves, arithmetic, logic, shuffles, conversions, compares, inserts/extracts, broadcasts, AES/SHA/CLMUL,
// BMI on general registers. Refused (they touch memory the ModRM operand does not describe, or a variable
// amount of it, or are not SIMD): gathers/scatters (VSIB), masked moves (vmaskmov/vpmaskmov, maskmovdqu),
// compress/expand, AMX, ldmxcsr/xsave (0F AE, handled elsewhere), and everything outside the 0F/0F38/0F3A
// SIMD opcode ranges.
#pragma once

#include <cstdint>
#include <optional>

#include "hypervisor/emul/instruction.h"

namespace coalesce {

struct SimdForm {
  uint8_t memory_bytes = 0;  // size of the memory operand (when the instruction has one)
  bool store = false;        // the memory operand is written (and not read)
  bool aligned = false;      // a memory operand not aligned to memory_bytes is #GP(0)
  bool vex_or_evex = false;  // needs CR4.OSXSAVE and the AVX (EVEX: AVX-512) state enabled in XCR0
  bool evex = false;
};

std::optional<SimdForm> ClassifySimd(const Instruction& in);
inline bool IsNativeSimd(const Instruction& in) { return ClassifySimd(in).has_value(); }

}  // namespace coalesce
