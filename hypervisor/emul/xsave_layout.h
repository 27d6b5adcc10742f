// Where each XSAVE state component lives, from CPUID leaf 0xD. KVM requires a guest's leaf 0xD offsets to
// match the host's (it moves XSAVE images between guest and host as is), so the host's CPUID is the layout.
#pragma once

#include <array>
#include <cstdint>

namespace coalesce {

inline constexpr uint32_t kXsaveLegacySize = 512;
inline constexpr uint32_t kXsaveHeaderOffset = 512;
inline constexpr uint32_t kXsaveHeaderSize = 64;
inline constexpr uint32_t kXsaveExtendedStart = kXsaveLegacySize + kXsaveHeaderSize;  // 576
inline constexpr uint64_t kXcompBvCompacted = 1ull << 63;
inline constexpr uint32_t kMxcsrDefault = 0x1f80;

struct XsaveComponent {
  uint32_t size = 0;
  uint32_t standard_offset = 0;  // 0 for supervisor components (they have no standard-format place)
  bool supervisor = false;
  bool align64 = false;  // 64-byte aligned in the compacted format
};

struct XsaveLayout {
  std::array<XsaveComponent, 63> components{};
  uint64_t user_mask = 0x3;        // components XCR0 may enable (CPUID.(0xD,0).EDX:EAX)
  uint64_t supervisor_mask = 0;    // components IA32_XSS may enable (CPUID.(0xD,1).EDX:ECX)
  bool has_xsave = false;
  bool has_xsaveopt = false;
  bool has_xsavec = false;
  bool has_xsaves = false;
  uint32_t mxcsr_mask = 0xffbf;    // which MXCSR bits may be set (FXSAVE's MXCSR_MASK)
  // AMD processors recompute FSW.ES/B from the exception flags and FCW masks when loading x87 state, and keep
  // the error pointers (FOP, FIP, FDP) only while an unmasked exception is pending (ES = 1): otherwise saves
  // and loads give zeros. Checked against the host CPU by tests/unit/emul/xsave_test.cc.
  bool amd_x87_error_state = false;

  // Bytes of a standard-format area holding the components in `mask` (at least legacy + header).
  [[nodiscard]] uint32_t StandardSize(uint64_t mask) const;
  // Offset of component i (>= 2) in a compacted area whose XCOMP_BV is `xcomp_bv`.
  [[nodiscard]] uint32_t CompactedOffset(uint64_t xcomp_bv, int component) const;
  [[nodiscard]] uint32_t CompactedSize(uint64_t xcomp_bv) const;

  // Reads CPUID on the host this process runs on.
  static XsaveLayout FromHostCpuid();
};

}  // namespace coalesce
