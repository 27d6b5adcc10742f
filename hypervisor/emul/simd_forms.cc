#include "hypervisor/emul/simd_forms.h"

namespace coalesce {
namespace {

constexpr bool In(uint8_t op, uint8_t lo, uint8_t hi) { return op >= lo && op <= hi; }

struct Sized {
  uint8_t bytes;
  bool store;
};

// The 0F map. `vl` is the vector length (16 for legacy SSE); MMX forms (legacy, no prefix) are 8 bytes.
std::optional<Sized> Map0F(const Instruction& in, uint8_t pfx, uint8_t vl) {
  const uint8_t op = in.opcode;
  const bool legacy = in.encoding == Encoding::kLegacy;
  const bool mmx = legacy && pfx == 0;
  const uint8_t gpr = in.rex_w() ? 8 : 4;
  const uint8_t scalar = pfx == 0xf3 ? 4 : 8;  // F3: single, F2: double
  const bool packed = pfx == 0 || pfx == 0x66;
  switch (op) {
    case 0x10: case 0x11: return Sized{packed ? vl : scalar, op == 0x11};
    case 0x12: case 0x16:
      if (pfx == 0xf3) return Sized{vl, false};                       // movsldup / movshdup
      if (pfx == 0xf2) return Sized{static_cast<uint8_t>(vl == 16 ? 8 : vl), false};  // movddup
      return Sized{8, false};                                         // movlps/movhps/movlpd/movhpd
    case 0x13: case 0x17: return Sized{8, true};
    case 0x14: case 0x15: return Sized{vl, false};
    case 0x28: return Sized{vl, false};
    case 0x29: case 0x2b: return Sized{vl, true};
    case 0x2a: return Sized{packed ? uint8_t{8} : gpr, false};  // cvtpi2ps/pd m64; cvtsi2ss/sd r/m
    case 0x2c: case 0x2d: return Sized{pfx == 0 ? uint8_t{8} : (pfx == 0x66 ? uint8_t{16} : scalar), false};
    case 0x2e: case 0x2f: return Sized{static_cast<uint8_t>(pfx == 0 ? 4 : 8), false};
    case 0x50: return Sized{0, false};  // movmskps/pd: registers only
    case 0x5a:
      if (pfx == 0) return Sized{static_cast<uint8_t>(vl / 2), false};
      return Sized{pfx == 0x66 ? vl : scalar, false};
    case 0x5b: return Sized{vl, false};
    case 0x6e: return Sized{gpr, false};
    case 0x6f: return Sized{mmx ? uint8_t{8} : vl, false};
    case 0x70: return Sized{mmx ? uint8_t{8} : vl, false};
    case 0x71: case 0x72: case 0x73: return Sized{0, false};  // shifts by immediate: registers only
    case 0x77: return Sized{0, false};                        // emms / vzeroupper / vzeroall
    case 0x7e:
      if (pfx == 0xf3) return Sized{8, false};  // movq xmm, m64
      return Sized{gpr, true};                  // movd/movq r/m, (x)mm
    case 0x7f: return Sized{mmx ? uint8_t{8} : vl, true};
    case 0xc2: return Sized{packed ? vl : scalar, false};
    case 0xc4: return Sized{2, false};  // pinsrw
    case 0xc5: return Sized{0, false};  // pextrw to a register
    case 0xc6: return Sized{vl, false};
    case 0xd6: return Sized{8, true};   // movq m64, xmm
    case 0xd7: return Sized{0, false};  // pmovmskb
    case 0xe6:
      if (pfx == 0xf3) return Sized{static_cast<uint8_t>(vl / 2), false};
      return Sized{vl, false};
    case 0xe7: return Sized{mmx ? uint8_t{8} : vl, true};
    case 0xf7: return std::nullopt;  // maskmovq/maskmovdqu: implicit [rdi]
    case 0xff: return std::nullopt;  // ud0
    default: break;
  }
  // Shifts by an XMM count: the count operand is 16 bytes whatever the vector length.
  if (op == 0xd1 || op == 0xd2 || op == 0xd3 || op == 0xe1 || op == 0xe2 || op == 0xf1 || op == 0xf2 ||
      op == 0xf3) {
    return Sized{mmx ? uint8_t{8} : uint8_t{16}, false};
  }
  if (In(op, 0x51, 0x5f)) return Sized{packed ? vl : scalar, false};
  if (In(op, 0x60, 0x6d) || In(op, 0x74, 0x76) || In(op, 0xd0, 0xfe)) return Sized{mmx ? uint8_t{8} : vl, false};
  if (!legacy && (In(op, 0x78, 0x7b))) return Sized{vl, false};  // EVEX conversions
  if (In(op, 0x7c, 0x7d)) return Sized{vl, false};
  return std::nullopt;
}

std::optional<Sized> Map0F38(const Instruction& in, uint8_t pfx, uint8_t vl) {
  const uint8_t op = in.opcode;
  const bool legacy = in.encoding == Encoding::kLegacy;
  const bool evex = in.encoding == Encoding::kEvex;
  const uint8_t gpr = in.rex_w() ? 8 : 4;
  if (legacy) {
    // Legacy 0F38: SSSE3/SSE4 with 66 (or MMX without prefix), SHA, MOVBE, CRC32, ADCX/ADOX.
    if (op == 0xf0 || op == 0xf1) {
      if (pfx == 0xf2) return Sized{op == 0xf0 ? uint8_t{1} : (in.operand_size_override ? uint8_t{2} : gpr), false};
      if (pfx == 0 || pfx == 0x66) return Sized{pfx == 0x66 ? uint8_t{2} : gpr, op == 0xf1};  // movbe
      return std::nullopt;
    }
    if (op == 0xf6 && (pfx == 0x66 || pfx == 0xf3)) return Sized{gpr, false};  // adcx / adox
    if (In(op, 0xc8, 0xcd) && pfx == 0) return Sized{16, false};                // SHA
    if (pfx == 0 && (In(op, 0x00, 0x0b) || In(op, 0x1c, 0x1e))) return Sized{8, false};
    if (pfx != 0x66) return std::nullopt;
    if (In(op, 0x80, 0x82)) return std::nullopt;  // invept/invvpid/invpcid: privileged, not SIMD
  }
  // Never: masked moves, gathers/scatters (VSIB), compress/expand, AMX, gather prefetches.
  if (In(op, 0x2c, 0x2f) || op == 0x8c || op == 0x8e || In(op, 0x90, 0x93) || In(op, 0xa0, 0xa3) ||
      op == 0xc6 || op == 0xc7 || In(op, 0x88, 0x8b) || op == 0x62 || op == 0x63) {
    return std::nullopt;
  }
  if (!evex && !legacy && (In(op, 0x49, 0x4b) || In(op, 0x5c, 0x5f) || In(op, 0x6b, 0x6f))) return std::nullopt;
  // EVEX with F3: the down-converting stores vpmov{q,d,w}{b,w,d} (0F38 10-15, 20-25, 30-35).
  const bool down_convert = evex && pfx == 0xf3 && (In(op, 0x10, 0x15) || In(op, 0x20, 0x25) || In(op, 0x30, 0x35));
  auto fraction = [&](uint8_t low) -> uint8_t {
    static constexpr uint8_t kDivisor[6] = {2, 4, 8, 2, 4, 2};  // bw bd bq wd wq dq (or their reverses)
    return static_cast<uint8_t>(vl / kDivisor[low & 0xf]);
  };
  if (down_convert) return Sized{fraction(op & 0x0f), true};
  switch (op) {
    case 0x13: return Sized{static_cast<uint8_t>(vl / 2), false};  // vcvtph2ps
    case 0x18: case 0x58: return Sized{4, false};
    case 0x19: case 0x59: return Sized{8, false};
    case 0x1a: case 0x5a: return Sized{16, false};
    case 0x1b: case 0x5b: return Sized{32, false};
    case 0x78: return Sized{1, false};
    case 0x79: return Sized{2, false};
    case 0x7a: case 0x7b: case 0x7c: return Sized{0, false};  // broadcasts from a general register
    case 0x41: case 0xdb: return Sized{16, false};
    case 0xf0: case 0xf1: return std::nullopt;
    case 0xf2: case 0xf3: case 0xf5: case 0xf6: case 0xf7: return Sized{gpr, false};  // BMI1/BMI2
    default: break;
  }
  if (In(op, 0x20, 0x25) || In(op, 0x30, 0x35)) return Sized{fraction(op & 0x0f), false};  // pmovsx/zx
  // FMA scalar forms (odd opcodes in 99-bf) and a few EVEX scalars: one element.
  const bool fma_scalar = (In(op, 0x99, 0x9f) || In(op, 0xa9, 0xaf) || In(op, 0xb9, 0xbf)) && (op & 1);
  if (fma_scalar || (evex && (op == 0x2d || op == 0x43 || op == 0x4d || op == 0x4f || op == 0xcb || op == 0xcd))) {
    return Sized{static_cast<uint8_t>(in.rex_w() ? 8 : 4), false};
  }
  if (op <= 0xdf) return Sized{vl, false};
  return std::nullopt;
}

std::optional<Sized> Map0F3A(const Instruction& in, uint8_t pfx, uint8_t vl) {
  const uint8_t op = in.opcode;
  const bool legacy = in.encoding == Encoding::kLegacy;
  const uint8_t gpr = in.rex_w() ? 8 : 4;
  if (legacy) {
    if (op == 0x0f && pfx == 0) return Sized{8, false};   // palignr mm
    if (op == 0xcc && pfx == 0) return Sized{16, false};  // sha1rnds4
    if (pfx != 0x66) return std::nullopt;
  }
  switch (op) {
    case 0x0a: return Sized{4, false};
    case 0x0b: return Sized{8, false};
    case 0x14: return Sized{1, true};
    case 0x15: return Sized{2, true};
    case 0x16: return Sized{gpr, true};
    case 0x17: return Sized{4, true};
    case 0x18: case 0x38: return Sized{16, false};
    case 0x19: case 0x39: return Sized{16, true};
    case 0x1a: case 0x3a: return Sized{32, false};
    case 0x1b: case 0x3b: return Sized{32, true};
    case 0x1d: return Sized{static_cast<uint8_t>(vl / 2), true};
    case 0x20: return Sized{1, false};
    case 0x21: return Sized{4, false};
    case 0x22: return Sized{gpr, false};
    case 0x06: case 0x46: return Sized{32, false};
    case 0x60: case 0x61: case 0x62: case 0x63: case 0xdf: return Sized{16, false};
    case 0xf0: return Sized{gpr, false};  // rorx
    default: break;
  }
  if (op <= 0x7f || op == 0xce || op == 0xcf) return Sized{vl, false};
  return std::nullopt;
}

// Encodings whose memory operand must be aligned even though other forms do not care.
bool AlignedForm(const Instruction& in, uint8_t pfx, const Sized& s) {
  const uint8_t op = in.opcode;
  if (in.map == OpcodeMap::k0F) {
    if ((op == 0x28 || op == 0x29 || op == 0x2b) && (pfx == 0 || pfx == 0x66)) return true;
    if ((op == 0x6f || op == 0x7f || op == 0xe7) && pfx == 0x66) return true;
  }
  if (in.map == OpcodeMap::k0F38 && op == 0x2a && pfx == 0x66) return true;  // movntdqa
  if (in.encoding != Encoding::kLegacy || s.bytes != 16) return false;
  // Legacy SSE: every 16-byte memory operand must be aligned, except the explicitly unaligned moves.
  const bool unaligned = (in.map == OpcodeMap::k0F && (op == 0x10 || op == 0x11)) ||
                         (in.map == OpcodeMap::k0F3A && In(op, 0x60, 0x63)) ||  // pcmp[ei]str[im]
                         (in.map == OpcodeMap::k0F && (op == 0x6f || op == 0x7f) && pfx == 0xf3) ||
                         (in.map == OpcodeMap::k0F && op == 0xf0 && pfx == 0xf2);
  return !unaligned;
}

}  // namespace

std::optional<SimdForm> ClassifySimd(const Instruction& in) {
  if (in.lock || in.map == OpcodeMap::kPrimary || in.length == 0) return std::nullopt;
  const uint8_t pfx = in.simd_prefix();
  const uint8_t vl = in.encoding == Encoding::kLegacy ? 16 : in.vector_bytes;
  std::optional<Sized> s;
  switch (in.map) {
    case OpcodeMap::k0F: s = Map0F(in, pfx, vl); break;
    case OpcodeMap::k0F38: s = Map0F38(in, pfx, vl); break;
    case OpcodeMap::k0F3A: s = Map0F3A(in, pfx, vl); break;
    case OpcodeMap::kPrimary: break;
  }
  if (!s) return std::nullopt;
  if (in.has_memory_operand() && s->bytes == 0) return std::nullopt;  // register-only form with memory: #UD
  SimdForm f;
  f.memory_bytes = s->bytes;
  f.store = s->store;
  f.vex_or_evex = in.encoding != Encoding::kLegacy;
  f.evex = in.encoding == Encoding::kEvex;
  // EVEX embedded broadcast: the memory operand is one element.
  if (f.evex && in.evex_broadcast && in.has_memory_operand() && !f.store) f.memory_bytes = in.rex_w() ? 8 : 4;
  f.aligned = AlignedForm(in, pfx, *s);
  return f;
}

}  // namespace coalesce
