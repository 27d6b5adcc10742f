// A decoded x86 instruction: what the decoder (instruction_decoder.h) produces and the executor consumes.
// Legacy, VEX and EVEX encodings are decoded (XOP is reported, not decoded).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace coalesce {

// The instructions the executor gives semantics to. Everything else decodes as kUnknown (with its length
// when the length is computable), so the diagnostic can still name the opcode.
enum class Mnemonic : uint8_t {
  kUnknown,
  kInt3,
  kInt1,
  kIntN,
  kUd2,
  kCmpxchg8b,
  kCmpxchg16b,
  kFxsave,
  kFxrstor,
  kXsave,
  kXrstor,
  kXsaveopt,
  kXsavec,
  kXsaves,
  kXrstors,
  kXgetbv,
  kLfence,
  kMfence,
  kSfence,
  kClac,
  kStac,
  kFwait,
  kLdmxcsr,
  kStmxcsr,
  // SSE register moves and pxor: PVM also fails on these inside an emulation batch.
  kPxor,
  kMovdqu,
  kMovdqa,
  kMovups,
  kMovaps,
  // Any SSE/AVX/AVX-512 data-processing instruction on the allowlist of simd_semantics.h, run natively.
  kSimd,
};

enum class Encoding : uint8_t { kLegacy, kVex, kEvex };

enum class OpcodeMap : uint8_t { kPrimary, k0F, k0F38, k0F3A };

// Segment register numbering as in the ModRM sreg field and kvm_sregs order used by GuestCpu.
enum class SegmentReg : uint8_t { kEs = 0, kCs = 1, kSs = 2, kDs = 3, kFs = 4, kGs = 5, kNone = 0xff };

inline constexpr int kNoRegister = -1;
inline constexpr size_t kMaxInstructionLength = 15;

// A memory operand from ModRM/SIB. Registers are full 0..15 numbers (REX applied).
struct MemoryOperand {
  int base = kNoRegister;
  int index = kNoRegister;
  uint8_t scale = 1;
  int64_t displacement = 0;
  bool rip_relative = false;
  // The segment that applies: an override, or SS for RSP/RBP-based addresses, else DS.
  SegmentReg segment = SegmentReg::kDs;
};

struct Instruction {
  std::array<uint8_t, kMaxInstructionLength> bytes{};
  uint8_t length = 0;

  // Legacy prefixes (the last of each group wins, as on hardware).
  bool lock = false;
  bool rep = false;    // F3
  bool repne = false;  // F2
  bool operand_size_override = false;  // 66
  bool address_size_override = false;  // 67
  SegmentReg segment_override = SegmentReg::kNone;
  uint8_t rex = 0;  // 0x40..0x4f, or 0 when absent

  OpcodeMap map = OpcodeMap::kPrimary;
  uint8_t opcode = 0;

  // VEX/EVEX fields (encoding != kLegacy). `rex` then holds the equivalent W/R/X/B bits, so ModRM/SIB
  // decoding is shared; the mandatory prefix is vex_pp (0: none, 1: 66, 2: F3, 3: F2).
  Encoding encoding = Encoding::kLegacy;
  uint8_t vex_size = 0;         // 2 (C5), 3 (C4) or 4 (62) bytes
  uint8_t vex_pp = 0;
  uint8_t vector_bytes = 16;    // VEX.L / EVEX.L'L: 16, 32 or 64
  bool evex_broadcast = false;  // EVEX.b (with a memory operand: broadcast one element)
  uint8_t evex_mask = 0;        // EVEX.aaa (opmask register, 0 = none)

  bool has_modrm = false;
  uint8_t modrm = 0;
  bool has_sib = false;
  uint8_t sib = 0;
  uint8_t displacement_size = 0;
  uint8_t immediate_size = 0;
  uint64_t immediate = 0;
  MemoryOperand memory;  // valid when has_modrm && mod() != 3

  Mnemonic mnemonic = Mnemonic::kUnknown;

  [[nodiscard]] bool rex_w() const { return (rex & 0x8) != 0; }
  [[nodiscard]] uint8_t mod() const { return modrm >> 6; }
  // ModRM.reg without REX.R: the opcode extension of group instructions (the "/digit").
  [[nodiscard]] uint8_t reg_field() const { return (modrm >> 3) & 7; }
  [[nodiscard]] uint8_t rm_field() const { return modrm & 7; }
  [[nodiscard]] bool has_memory_operand() const { return has_modrm && mod() != 3; }
  // The SIMD mandatory prefix whatever the encoding: 0, 0x66, 0xf3 or 0xf2.
  [[nodiscard]] uint8_t simd_prefix() const;
  // Offset of the ModRM byte in `bytes` (has_modrm only).
  [[nodiscard]] size_t modrm_offset() const {
    return length - immediate_size - displacement_size - (has_sib ? 1 : 0) - 1;
  }

  // "cmpxchg16b", "xrstor64", ...; "unknown" for instructions without semantics here.
  [[nodiscard]] std::string name() const;
  // The opcode for diagnostics, e.g. "0f c7 /1" or "0f 01 d0".
  [[nodiscard]] std::string OpcodeText() const;
  // The instruction bytes in hex, space separated.
  [[nodiscard]] std::string BytesText() const;
};

std::string_view MnemonicName(Mnemonic m);

}  // namespace coalesce
