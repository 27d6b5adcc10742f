// The abstract CPU the instruction executor works on. Two implementations: KvmGuestCpu (a real vCPU through
// KVM's state ioctls and guest RAM) and the software CPU of the unit tests. Nothing here knows about KVM.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/emul/xsave_layout.h"

namespace coalesce {

inline constexpr uint8_t kVectorDivideError = 0;
inline constexpr uint8_t kVectorDebug = 1;
inline constexpr uint8_t kVectorBreakpoint = 3;
inline constexpr uint8_t kVectorInvalidOpcode = 6;
inline constexpr uint8_t kVectorDeviceNotAvailable = 7;
inline constexpr uint8_t kVectorStackFault = 12;
inline constexpr uint8_t kVectorGeneralProtection = 13;
inline constexpr uint8_t kVectorX87 = 16;
inline constexpr uint8_t kVectorPageFault = 14;

// Page-fault error code bits.
inline constexpr uint32_t kPfPresent = 1u << 0;
inline constexpr uint32_t kPfWrite = 1u << 1;
inline constexpr uint32_t kPfUser = 1u << 2;
inline constexpr uint32_t kPfReservedBit = 1u << 3;

inline constexpr uint64_t kRflagsCf = 1ull << 0;
inline constexpr uint64_t kRflagsZf = 1ull << 6;
inline constexpr uint64_t kRflagsTf = 1ull << 8;
inline constexpr uint64_t kRflagsIf = 1ull << 9;
inline constexpr uint64_t kRflagsRf = 1ull << 16;
inline constexpr uint64_t kRflagsAc = 1ull << 18;

inline constexpr uint64_t kCr0Pe = 1ull << 0;
inline constexpr uint64_t kCr0Mp = 1ull << 1;
inline constexpr uint64_t kCr0Em = 1ull << 2;
inline constexpr uint64_t kCr0Ts = 1ull << 3;
inline constexpr uint64_t kCr0Wp = 1ull << 16;
inline constexpr uint64_t kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5;
inline constexpr uint64_t kCr4Osfxsr = 1ull << 9;
inline constexpr uint64_t kCr4La57 = 1ull << 12;
inline constexpr uint64_t kCr4Osxsave = 1ull << 18;
inline constexpr uint64_t kCr4Smap = 1ull << 21;
inline constexpr uint64_t kEferNxe = 1ull << 11;

// An exception the instruction raises; the executor hands it to GuestCpu::InjectException.
struct Fault {
  uint8_t vector = 0;
  std::optional<uint32_t> error_code;
  uint64_t cr2 = 0;  // faulting linear address, #PF only

  static Fault DivideError() { return {kVectorDivideError, std::nullopt, 0}; }
  static Fault GeneralProtection(uint32_t code = 0) { return {kVectorGeneralProtection, code, 0}; }
  static Fault StackFault(uint32_t code = 0) { return {kVectorStackFault, code, 0}; }
  static Fault InvalidOpcode() { return {kVectorInvalidOpcode, std::nullopt, 0}; }
  static Fault DeviceNotAvailable() { return {kVectorDeviceNotAvailable, std::nullopt, 0}; }
  static Fault Breakpoint() { return {kVectorBreakpoint, std::nullopt, 0}; }
  static Fault PageFault(uint64_t address, uint32_t code) { return {kVectorPageFault, code, address}; }
  bool operator==(const Fault&) const = default;
};

// Register file. Only gpr, rip and rflags are written back by SetRegisters; the rest is read-only context.
struct RegisterState {
  std::array<uint64_t, 16> gpr{};  // rax rcx rdx rbx rsp rbp rsi rdi r8..r15 (ModRM numbering)
  uint64_t rip = 0;
  uint64_t rflags = 0x2;
  uint64_t cr0 = 0;
  uint64_t cr4 = 0;
  uint64_t efer = 0;
  std::array<uint64_t, 6> segment_base{};  // es cs ss ds fs gs (SegmentReg order)
  uint8_t cpl = 0;
  bool long_mode_64 = true;  // EFER.LMA and CS.L: 64-bit mode
};

// Extended (x87/SSE/AVX/...) state as one standard-format XSAVE image, the format KVM_GET_XSAVE uses: the
// legacy region in its 64-bit (REX.W) form, XSTATE_BV in the header = XINUSE (which components are not in
// their initial configuration), component i >= 2 at its CPUID standard offset.
struct ExtendedState {
  uint64_t xcr0 = 0x3;
  uint64_t xss = 0;  // IA32_XSS: supervisor components enabled for XSAVES/XRSTORS
  std::vector<uint8_t> image;
};

struct MemoryAccess {
  bool write = false;
  bool user = false;  // a CPL3 access: user/supervisor and SMAP checks apply accordingly
};

// The result of a guest memory access: std::nullopt when it happened, a Fault for the guest otherwise.
// A non-OK status is a host-side failure (for example guest-physical memory that is not RAM).
using AccessResult = absl::StatusOr<std::optional<Fault>>;

class GuestCpu {
 public:
  virtual ~GuestCpu() = default;

  virtual absl::StatusOr<RegisterState> GetRegisters() = 0;
  virtual absl::Status SetRegisters(const RegisterState& regs) = 0;
  virtual absl::StatusOr<ExtendedState> GetExtendedState() = 0;
  // Writes image (and nothing else: xcr0/xss are read-only here).
  virtual absl::Status SetExtendedState(const ExtendedState& state) = 0;
  [[nodiscard]] virtual const XsaveLayout& xsave_layout() const = 0;

  // Guest-linear memory. An access is all or nothing: every page is checked before any byte is written.
  virtual AccessResult Read(uint64_t linear, std::span<uint8_t> out, MemoryAccess access) = 0;
  virtual AccessResult Write(uint64_t linear, std::span<const uint8_t> in, MemoryAccess access) = 0;
  // Checks that [linear, linear+length) could be accessed, without touching it.
  virtual AccessResult Probe(uint64_t linear, uint64_t length, MemoryAccess access) = 0;
  // Atomic compare-exchange of 8 or 16 bytes: when memory equals `expected`, stores `desired`. `old` receives
  // the memory's previous contents either way. Counts as a write access for permission checks even on
  // failure, as on hardware.
  virtual AccessResult CompareExchange(uint64_t linear, std::span<const uint8_t> expected,
                                       std::span<const uint8_t> desired, std::span<uint8_t> old,
                                       MemoryAccess access) = 0;

  // Delivers `fault` to the guest on its next entry.
  virtual absl::Status InjectException(const Fault& fault) = 0;
};

}  // namespace coalesce
