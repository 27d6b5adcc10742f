#include "hypervisor/emul/instruction.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace coalesce {

std::string_view MnemonicName(Mnemonic m) {
  switch (m) {
    case Mnemonic::kUnknown: return "unknown";
    case Mnemonic::kInt3: return "int3";
    case Mnemonic::kInt1: return "int1";
    case Mnemonic::kIntN: return "int";
    case Mnemonic::kUd2: return "ud2";
    case Mnemonic::kCmpxchg8b: return "cmpxchg8b";
    case Mnemonic::kCmpxchg16b: return "cmpxchg16b";
    case Mnemonic::kFxsave: return "fxsave";
    case Mnemonic::kFxrstor: return "fxrstor";
    case Mnemonic::kXsave: return "xsave";
    case Mnemonic::kXrstor: return "xrstor";
    case Mnemonic::kXsaveopt: return "xsaveopt";
    case Mnemonic::kXsavec: return "xsavec";
    case Mnemonic::kXsaves: return "xsaves";
    case Mnemonic::kXrstors: return "xrstors";
    case Mnemonic::kXgetbv: return "xgetbv";
    case Mnemonic::kLfence: return "lfence";
    case Mnemonic::kMfence: return "mfence";
    case Mnemonic::kSfence: return "sfence";
    case Mnemonic::kClac: return "clac";
    case Mnemonic::kStac: return "stac";
    case Mnemonic::kFwait: return "fwait";
    case Mnemonic::kLdmxcsr: return "ldmxcsr";
    case Mnemonic::kStmxcsr: return "stmxcsr";
    case Mnemonic::kPxor: return "pxor";
    case Mnemonic::kMovdqu: return "movdqu";
    case Mnemonic::kMovdqa: return "movdqa";
    case Mnemonic::kMovups: return "movups";
    case Mnemonic::kMovaps: return "movaps";
    case Mnemonic::kSimd: return "simd";
  }
  return "?";
}

std::string Instruction::name() const {
  std::string out(MnemonicName(mnemonic));
  // The 64-bit forms of the FPU save/restore family differ in the x87 pointer format: name them apart.
  const bool has64 = mnemonic == Mnemonic::kFxsave || mnemonic == Mnemonic::kFxrstor ||
                     mnemonic == Mnemonic::kXsave || mnemonic == Mnemonic::kXrstor ||
                     mnemonic == Mnemonic::kXsaveopt || mnemonic == Mnemonic::kXsavec ||
                     mnemonic == Mnemonic::kXsaves || mnemonic == Mnemonic::kXrstors;
  if (has64 && rex_w()) out += "64";
  if (mnemonic == Mnemonic::kSimd) {
    // No name table for the thousands of SIMD instructions: a compact opcode, e.g. "vex256.66.0f.fe".
    static constexpr const char* kMaps[] = {"", "0f", "0f38", "0f3a"};
    out = encoding == Encoding::kLegacy ? "sse"
          : absl::StrFormat("%s%d", encoding == Encoding::kVex ? "vex" : "evex", 8 * vector_bytes);
    if (simd_prefix() != 0) absl::StrAppendFormat(&out, ".%02x", simd_prefix());
    if (encoding != Encoding::kLegacy && rex_w()) out += ".w1";
    absl::StrAppendFormat(&out, ".%s.%02x", kMaps[static_cast<int>(map)], opcode);
  }
  return out;
}

uint8_t Instruction::simd_prefix() const {
  if (encoding != Encoding::kLegacy) {
    static constexpr uint8_t kPp[4] = {0, 0x66, 0xf3, 0xf2};
    return kPp[vex_pp & 3];
  }
  if (rep) return 0xf3;
  if (repne) return 0xf2;
  return operand_size_override ? 0x66 : 0;
}

std::string Instruction::OpcodeText() const {
  std::string out;
  if (encoding != Encoding::kLegacy) {
    absl::StrAppendFormat(&out, "%s.%d", encoding == Encoding::kVex ? "vex" : "evex", 8 * vector_bytes);
    if (simd_prefix() != 0) absl::StrAppendFormat(&out, ".%02x", simd_prefix());
    if (rex_w()) out += ".w1";
    out += " ";
  }
  if (encoding == Encoding::kLegacy && rep) out += "f3 ";
  if (encoding == Encoding::kLegacy && repne) out += "f2 ";
  if (encoding == Encoding::kLegacy && operand_size_override) out += "66 ";
  if (encoding == Encoding::kLegacy && rex != 0) absl::StrAppendFormat(&out, "rex.%s%s%s%s ", rex_w() ? "w" : "", (rex & 4) ? "r" : "",
                                      (rex & 2) ? "x" : "", (rex & 1) ? "b" : "");
  switch (map) {
    case OpcodeMap::kPrimary: break;
    case OpcodeMap::k0F: out += "0f "; break;
    case OpcodeMap::k0F38: out += "0f 38 "; break;
    case OpcodeMap::k0F3A: out += "0f 3a "; break;
  }
  absl::StrAppendFormat(&out, "%02x", opcode);
  if (has_modrm) {
    if (mod() == 3) {
      absl::StrAppendFormat(&out, " %02x", modrm);
    } else {
      absl::StrAppendFormat(&out, " /%d", reg_field());
    }
  }
  return out;
}

std::string Instruction::BytesText() const {
  std::string out;
  for (size_t i = 0; i < length; ++i) absl::StrAppendFormat(&out, "%s%02x", i == 0 ? "" : " ", bytes[i]);
  return out;
}

}  // namespace coalesce
