#include "hypervisor/emul/instruction_decoder.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "hypervisor/emul/simd_forms.h"

namespace coalesce {
namespace {

// Immediate kinds of the primary opcode map in 64-bit mode.
enum class Imm : uint8_t { kNone, kB, kW, kZ, kV, kWB, kMoffs, kGroup3 };

struct OpcodeInfo {
  bool modrm;
  Imm imm;
};

OpcodeInfo PrimaryInfo(uint8_t op) {
  if (op < 0x40) {
    switch (op & 7) {
      case 0: case 1: case 2: case 3: return {true, Imm::kNone};
      case 4: return {false, Imm::kB};
      case 5: return {false, Imm::kZ};
      default: return {false, Imm::kNone};  // invalid in 64-bit mode, or prefixes handled earlier
    }
  }
  if (op < 0x60) return {false, Imm::kNone};  // REX (handled earlier), push/pop
  switch (op) {
    case 0x62: return {true, Imm::kNone};  // EVEX in 64-bit mode; rejected before this table
    case 0x63: return {true, Imm::kNone};
    case 0x68: return {false, Imm::kZ};
    case 0x69: return {true, Imm::kZ};
    case 0x6a: return {false, Imm::kB};
    case 0x6b: return {true, Imm::kB};
    case 0x80: case 0x82: case 0x83: case 0xc0: case 0xc1: case 0xc6: return {true, Imm::kB};
    case 0x81: case 0xc7: return {true, Imm::kZ};
    case 0xa0: case 0xa1: case 0xa2: case 0xa3: return {false, Imm::kMoffs};
    case 0xa8: case 0xcd: case 0xd4: case 0xd5: case 0xeb: return {false, Imm::kB};
    case 0xa9: case 0xe8: case 0xe9: return {false, Imm::kZ};
    case 0xc2: case 0xca: return {false, Imm::kW};
    case 0xc8: return {false, Imm::kWB};
    case 0xf6: case 0xf7: return {true, Imm::kGroup3};
    default: break;
  }
  if (op >= 0x70 && op <= 0x7f) return {false, Imm::kB};
  if (op >= 0x84 && op <= 0x8f) return {true, Imm::kNone};
  if (op >= 0xb0 && op <= 0xb7) return {false, Imm::kB};
  if (op >= 0xb8 && op <= 0xbf) return {false, Imm::kV};
  if (op >= 0xd0 && op <= 0xd3) return {true, Imm::kNone};
  if (op >= 0xd8 && op <= 0xdf) return {true, Imm::kNone};
  if (op >= 0xe0 && op <= 0xe7) return {false, Imm::kB};
  if (op == 0xfe || op == 0xff) return {true, Imm::kNone};
  return {false, Imm::kNone};
}

OpcodeInfo TwoByteInfo(uint8_t op) {
  switch (op) {
    case 0x05: case 0x06: case 0x07: case 0x08: case 0x09: case 0x0b: case 0x0e:
    case 0x30: case 0x31: case 0x32: case 0x33: case 0x34: case 0x35: case 0x37:
    case 0x77: case 0xa0: case 0xa1: case 0xa2: case 0xa8: case 0xa9: case 0xaa:
      return {false, Imm::kNone};
    case 0x70: case 0x71: case 0x72: case 0x73: case 0xa4: case 0xac: case 0xba:
    case 0xc2: case 0xc4: case 0xc5: case 0xc6: case 0x0f:
      return {true, Imm::kB};
    default: break;
  }
  if (op >= 0x80 && op <= 0x8f) return {false, Imm::kZ};  // jcc rel32
  if (op >= 0xc8 && op <= 0xcf) return {false, Imm::kNone};  // bswap
  return {true, Imm::kNone};
}

SegmentReg SegmentPrefix(uint8_t b) {
  switch (b) {
    case 0x26: return SegmentReg::kEs;
    case 0x2e: return SegmentReg::kCs;
    case 0x36: return SegmentReg::kSs;
    case 0x3e: return SegmentReg::kDs;
    case 0x64: return SegmentReg::kFs;
    case 0x65: return SegmentReg::kGs;
    default: return SegmentReg::kNone;
  }
}

// Names the instructions the executor handles; everything else stays kUnknown.
Mnemonic Classify(const Instruction& in) {
  const bool mem = in.has_memory_operand();
  const uint8_t reg = in.reg_field();
  const bool plain = !in.operand_size_override && !in.rep && !in.repne;  // no mandatory prefix
  switch (in.map) {
    case OpcodeMap::kPrimary:
      if (in.opcode == 0xcc) return Mnemonic::kInt3;
      if (in.opcode == 0xf1) return Mnemonic::kInt1;
      if (in.opcode == 0xcd) return Mnemonic::kIntN;
      if (in.opcode == 0x9b) return Mnemonic::kFwait;
      return Mnemonic::kUnknown;
    case OpcodeMap::k0F:
      if (in.opcode == 0x0b) return Mnemonic::kUd2;
      if (in.operand_size_override && !in.rep && !in.repne) {
        if (in.opcode == 0xef) return Mnemonic::kPxor;
        if (in.opcode == 0x6f || in.opcode == 0x7f) return Mnemonic::kMovdqa;
      }
      if (in.rep && (in.opcode == 0x6f || in.opcode == 0x7f)) return Mnemonic::kMovdqu;
      if (plain && (in.opcode == 0x10 || in.opcode == 0x11)) return Mnemonic::kMovups;
      if (plain && (in.opcode == 0x28 || in.opcode == 0x29)) return Mnemonic::kMovaps;
      if (in.opcode == 0xc7 && mem) {
        if (reg == 1) return in.rex_w() ? Mnemonic::kCmpxchg16b : Mnemonic::kCmpxchg8b;
        if (!plain) return Mnemonic::kUnknown;
        if (reg == 3) return Mnemonic::kXrstors;
        if (reg == 4) return Mnemonic::kXsavec;
        if (reg == 5) return Mnemonic::kXsaves;
        return Mnemonic::kUnknown;
      }
      if (in.opcode == 0xae) {
        if (mem && plain) {
          switch (reg) {
            case 0: return Mnemonic::kFxsave;
            case 1: return Mnemonic::kFxrstor;
            case 2: return Mnemonic::kLdmxcsr;
            case 3: return Mnemonic::kStmxcsr;
            case 4: return Mnemonic::kXsave;
            case 5: return Mnemonic::kXrstor;
            case 6: return Mnemonic::kXsaveopt;
            default: return Mnemonic::kUnknown;
          }
        }
        if (!mem && plain) {
          if (reg == 5) return Mnemonic::kLfence;
          if (reg == 6) return Mnemonic::kMfence;
          if (reg == 7) return Mnemonic::kSfence;
        }
        return Mnemonic::kUnknown;
      }
      if (in.opcode == 0x01 && in.has_modrm && in.mod() == 3 && plain) {
        switch (in.modrm) {
          case 0xd0: return Mnemonic::kXgetbv;
          case 0xca: return Mnemonic::kClac;
          case 0xcb: return Mnemonic::kStac;
          default: return Mnemonic::kUnknown;
        }
      }
      return Mnemonic::kUnknown;
    default:
      return Mnemonic::kUnknown;
  }
}

// Reads little-endian `size` bytes at `pos`, or fails when the buffer is too short.
absl::StatusOr<uint64_t> ReadLe(std::span<const uint8_t> bytes, size_t pos, size_t size) {
  if (pos + size > bytes.size()) {
    return absl::OutOfRangeError(absl::StrFormat("instruction truncated: need %d bytes, have %d", pos + size,
                                                 bytes.size()));
  }
  uint64_t v = 0;
  for (size_t i = 0; i < size; ++i) v |= static_cast<uint64_t>(bytes[pos + i]) << (8 * i);
  return v;
}

int64_t SignExtend(uint64_t v, size_t size) {
  const unsigned shift = static_cast<unsigned>(64 - 8 * size);
  return static_cast<int64_t>(v << shift) >> shift;
}

}  // namespace

absl::StatusOr<Instruction> DecodeInstruction64(std::span<const uint8_t> bytes) {
  Instruction in;
  size_t pos = 0;
  auto need = [&](size_t n) -> absl::Status {
    if (pos + n > kMaxInstructionLength) {
      return absl::InvalidArgumentError("instruction longer than 15 bytes");
    }
    if (pos + n > bytes.size()) {
      return absl::OutOfRangeError(absl::StrFormat("instruction truncated after %d bytes", bytes.size()));
    }
    return absl::OkStatus();
  };

  // Legacy prefixes, then at most one REX immediately before the opcode (a REX followed by a legacy
  // prefix is ignored, as on hardware).
  for (;;) {
    if (auto s = need(1); !s.ok()) return s;
    const uint8_t b = bytes[pos];
    if (b == 0xf0) {
      in.lock = true;
    } else if (b == 0xf2) {
      in.repne = true;
      in.rep = false;
    } else if (b == 0xf3) {
      in.rep = true;
      in.repne = false;
    } else if (b == 0x66) {
      in.operand_size_override = true;
    } else if (b == 0x67) {
      in.address_size_override = true;
    } else if (SegmentPrefix(b) != SegmentReg::kNone) {
      in.segment_override = SegmentPrefix(b);
    } else if ((b & 0xf0) == 0x40) {
      in.rex = b;
      ++pos;
      if (auto s = need(1); !s.ok()) return s;
      const uint8_t next = bytes[pos];
      const bool legacy = next == 0xf0 || next == 0xf2 || next == 0xf3 || next == 0x66 || next == 0x67 ||
                          SegmentPrefix(next) != SegmentReg::kNone;
      if (legacy) in.rex = 0;
      if (legacy || (next & 0xf0) == 0x40) continue;
      break;
    } else {
      break;
    }
    ++pos;
  }

  // Opcode.
  if (auto s = need(1); !s.ok()) return s;
  uint8_t op = bytes[pos++];
  OpcodeInfo info{};
  if (op == 0x0f) {
    if (auto s = need(1); !s.ok()) return s;
    op = bytes[pos++];
    if (op == 0x38 || op == 0x3a) {
      in.map = op == 0x38 ? OpcodeMap::k0F38 : OpcodeMap::k0F3A;
      if (auto s = need(1); !s.ok()) return s;
      op = bytes[pos++];
      info = {true, in.map == OpcodeMap::k0F3A ? Imm::kB : Imm::kNone};
    } else {
      in.map = OpcodeMap::k0F;
      info = TwoByteInfo(op);
    }
  } else if (op == 0xc4 || op == 0xc5 || op == 0x62) {
    // VEX (C5: 2 bytes, C4: 3) or EVEX (62: 4). In 64-bit mode these bytes are always prefixes. The R/X/B
    // (and W) bits are stored inverted (W is not); we fold them into `rex` for the shared ModRM decoding.
    if (in.rex != 0 || in.operand_size_override || in.rep || in.repne || in.lock) {
      return absl::InvalidArgumentError("VEX/EVEX after a 66/F2/F3/LOCK/REX prefix (#UD)");
    }
    const size_t payload = op == 0xc5 ? 1 : (op == 0xc4 ? 2 : 3);
    if (auto s = need(payload + 1); !s.ok()) return s;
    const uint8_t p0 = bytes[pos];
    const uint8_t p1 = payload >= 2 ? bytes[pos + 1] : 0;
    const uint8_t p2 = payload >= 3 ? bytes[pos + 2] : 0;
    uint8_t map_select = 1, r = 0, x = 0, b = 0, w = 0, l = 0;
    if (op == 0xc5) {
      r = !(p0 & 0x80);
      l = (p0 >> 2) & 1;
      in.vex_pp = p0 & 3;
    } else if (op == 0xc4) {
      r = !(p0 & 0x80);
      x = !(p0 & 0x40);
      b = !(p0 & 0x20);
      map_select = p0 & 0x1f;
      w = (p1 >> 7) & 1;
      l = (p1 >> 2) & 1;
      in.vex_pp = p1 & 3;
    } else {
      if ((p0 & 0x08) != 0 || (p1 & 0x04) == 0) return absl::InvalidArgumentError("malformed EVEX prefix");
      r = !(p0 & 0x80);
      x = !(p0 & 0x40);
      b = !(p0 & 0x20);
      map_select = p0 & 0x07;
      w = (p1 >> 7) & 1;
      in.vex_pp = p1 & 3;
      l = (p2 >> 5) & 3;
      in.evex_broadcast = (p2 & 0x10) != 0;
      in.evex_mask = p2 & 7;
      if (l == 3) return absl::InvalidArgumentError("EVEX vector length 1024 is reserved (#UD)");
    }
    if (map_select < 1 || map_select > 3) {
      return absl::InvalidArgumentError(absl::StrFormat("VEX/EVEX opcode map %d is not decoded", map_select));
    }
    pos += payload;
    in.encoding = op == 0x62 ? Encoding::kEvex : Encoding::kVex;
    in.vex_size = static_cast<uint8_t>(payload + 1);
    in.vector_bytes = static_cast<uint8_t>(16u << l);
    in.rex = static_cast<uint8_t>(0x40 | (w << 3) | (r << 2) | (x << 1) | b);
    in.map = map_select == 1 ? OpcodeMap::k0F : (map_select == 2 ? OpcodeMap::k0F38 : OpcodeMap::k0F3A);
    op = bytes[pos++];
    const bool imm8 = in.map == OpcodeMap::k0F3A ||
                      (in.map == OpcodeMap::k0F && ((op >= 0x70 && op <= 0x73) || (op >= 0xc2 && op <= 0xc6)));
    // VEX 0F 77 (vzeroupper/vzeroall) is the only one without ModRM.
    const bool modrm = !(in.map == OpcodeMap::k0F && op == 0x77);
    info = {modrm, imm8 ? Imm::kB : Imm::kNone};
  } else {
    if (op == 0x8f) {
      // XOP (0x8f only when ModRM.reg != 0): not decoded. 8f /0 is pop r/m.
      const bool xop = pos < bytes.size() && ((bytes[pos] >> 3) & 7) != 0;
      if (xop) {
        in.opcode = op;
        in.length = static_cast<uint8_t>(std::min(bytes.size(), kMaxInstructionLength));
        std::copy_n(bytes.begin(), in.length, in.bytes.begin());
        return absl::InvalidArgumentError("XOP-encoded instruction (escape 0x8f) is not decoded");
      }
    }
    info = PrimaryInfo(op);
  }
  in.opcode = op;

  // ModRM, SIB, displacement.
  if (info.modrm) {
    if (auto s = need(1); !s.ok()) return s;
    in.has_modrm = true;
    in.modrm = bytes[pos++];
    if (in.mod() != 3) {
      MemoryOperand& m = in.memory;
      const uint8_t rex_b = (in.rex & 1) ? 8 : 0;
      const uint8_t rex_x = (in.rex & 2) ? 8 : 0;
      uint8_t disp_size = in.mod() == 1 ? 1 : (in.mod() == 2 ? 4 : 0);
      if (in.rm_field() == 4) {
        if (auto s = need(1); !s.ok()) return s;
        in.has_sib = true;
        in.sib = bytes[pos++];
        const uint8_t base = in.sib & 7;
        const uint8_t index = ((in.sib >> 3) & 7) | rex_x;
        m.scale = static_cast<uint8_t>(1u << (in.sib >> 6));
        m.index = index == 4 ? kNoRegister : index;
        if (base == 5 && in.mod() == 0) {
          m.base = kNoRegister;
          disp_size = 4;
        } else {
          m.base = base | rex_b;
        }
      } else if (in.rm_field() == 5 && in.mod() == 0) {
        m.rip_relative = true;
        disp_size = 4;
      } else {
        m.base = in.rm_field() | rex_b;
      }
      if (disp_size != 0) {
        if (auto s = need(disp_size); !s.ok()) return s;
        auto d = ReadLe(bytes, pos, disp_size);
        if (!d.ok()) return d.status();
        m.displacement = SignExtend(*d, disp_size);
        in.displacement_size = disp_size;
        pos += disp_size;
      }
      const bool stack_base = m.base == 4 || m.base == 5;  // RSP/RBP (not R12/R13)
      m.segment = in.segment_override != SegmentReg::kNone ? in.segment_override
                  : stack_base                                ? SegmentReg::kSs
                                                              : SegmentReg::kDs;
    }
  }

  // Immediate.
  const bool opsize16 = in.operand_size_override && !in.rex_w();
  size_t imm_size = 0;
  switch (info.imm) {
    case Imm::kNone: break;
    case Imm::kB: imm_size = 1; break;
    case Imm::kW: imm_size = 2; break;
    case Imm::kWB: imm_size = 3; break;
    case Imm::kZ: imm_size = opsize16 && in.map == OpcodeMap::kPrimary && op != 0xe8 && op != 0xe9 ? 2 : 4; break;
    case Imm::kV: imm_size = in.rex_w() ? 8 : (opsize16 ? 2 : 4); break;
    case Imm::kMoffs: imm_size = in.address_size_override ? 4 : 8; break;
    case Imm::kGroup3:
      if (in.reg_field() <= 1) imm_size = op == 0xf6 ? 1 : (opsize16 ? 2 : 4);
      break;
  }
  if (imm_size != 0) {
    if (auto s = need(imm_size); !s.ok()) return s;
    auto v = ReadLe(bytes, pos, imm_size);
    if (!v.ok()) return v.status();
    in.immediate = *v;
    in.immediate_size = static_cast<uint8_t>(imm_size);
    pos += imm_size;
  }

  in.length = static_cast<uint8_t>(pos);
  std::copy_n(bytes.begin(), pos, in.bytes.begin());
  in.mnemonic = in.encoding == Encoding::kLegacy ? Classify(in) : Mnemonic::kUnknown;
  if (in.mnemonic == Mnemonic::kUnknown && IsNativeSimd(in)) in.mnemonic = Mnemonic::kSimd;
  return in;
}

}  // namespace coalesce
