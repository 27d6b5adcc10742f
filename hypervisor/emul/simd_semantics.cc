#include "hypervisor/emul/simd_semantics.h"

#include <signal.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/emul/memory_operand.h"
#include "hypervisor/emul/native_stub.h"
#include "hypervisor/emul/simd_forms.h"
#include "hypervisor/emul/xsave_layout.h"

namespace coalesce {
namespace {

constexpr uint64_t kCr4Osxmmexcpt = 1ull << 10;
constexpr uint8_t kVectorSimdFloatingPoint = 19;
constexpr uint32_t kMxcsrOffset = 24;
constexpr uint32_t kMxcsrExceptionMasks = 0x1f80;
constexpr uint64_t kXcr0Avx = 0x6;          // SSE + YMM
constexpr uint64_t kXcr0Avx512 = 0xe6;      // + opmask, ZMM_Hi256, Hi16_ZMM

uint64_t HostXcr0() {
  uint32_t lo = 0, hi = 0;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0u));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

uint64_t Load64(const std::vector<uint8_t>& image, size_t at) {
  uint64_t v = 0;
  std::memcpy(&v, image.data() + at, 8);
  return v;
}

// The image must be one XRSTOR accepts on this host, or the host would fault in the middle of the stub.
absl::Status CheckImage(const ExtendedState& st, uint32_t mxcsr_mask) {
  if (st.image.size() < kXsaveExtendedStart || st.image.size() > kNativeXsaveAreaSize) {
    return absl::FailedPreconditionError(absl::StrFormat("XSAVE image of %d bytes", st.image.size()));
  }
  const uint64_t xstate_bv = Load64(st.image, kXsaveHeaderOffset);
  const uint64_t xcomp_bv = Load64(st.image, kXsaveHeaderOffset + 8);
  if ((xstate_bv & ~HostXcr0()) != 0 || xcomp_bv != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "guest XSAVE header (XSTATE_BV %#x, XCOMP_BV %#x) not loadable on this host", xstate_bv, xcomp_bv));
  }
  uint32_t mxcsr = 0;
  std::memcpy(&mxcsr, st.image.data() + kMxcsrOffset, 4);
  if ((mxcsr & ~mxcsr_mask) != 0) return absl::FailedPreconditionError("guest MXCSR has reserved bits set");
  // An unmasked SIMD exception would need #XM delivered with the exact partial result; guest kernels run
  // with every exception masked, so this is refused rather than half-modelled.
  if ((mxcsr & kMxcsrExceptionMasks) != kMxcsrExceptionMasks) {
    return absl::UnimplementedError(absl::StrFormat("guest MXCSR %#x unmasks SIMD exceptions", mxcsr));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Completion> ExecuteSimd(GuestCpu& cpu, const Instruction& in, RegisterState& regs) {
  const std::optional<SimdForm> form = ClassifySimd(in);
  if (!form) return absl::InvalidArgumentError("not an instruction the native SIMD path runs");
  // Availability, in the CPU's order: #UD for a disabled extension, then #NM for CR0.TS.
  if (regs.cr0 & kCr0Em) return Completion::Faulted(Fault::InvalidOpcode());
  if (!form->vex_or_evex && !(regs.cr4 & kCr4Osfxsr) && in.simd_prefix() != 0) {
    return Completion::Faulted(Fault::InvalidOpcode());
  }
  ASSIGN_OR_RETURN(ExtendedState st, cpu.GetExtendedState());
  if (form->vex_or_evex) {
    const uint64_t need = form->evex ? kXcr0Avx512 : kXcr0Avx;
    if (!(regs.cr4 & kCr4Osxsave) || (st.xcr0 & need) != need) return Completion::Faulted(Fault::InvalidOpcode());
  }
  if (regs.cr0 & kCr0Ts) return Completion::Faulted(Fault::DeviceNotAvailable());
  RETURN_IF_ERROR(CheckImage(st, cpu.xsave_layout().mxcsr_mask));

  NativeContext ctx;
  ctx.gpr = regs.gpr;
  ctx.rflags = regs.rflags;
  std::vector<uint8_t> code;
  std::optional<size_t> disp_at;
  uint64_t linear = 0;
  const MemoryAccess read{.write = false, .user = regs.cpl == 3};
  const size_t size = form->memory_bytes;
  if (in.has_memory_operand()) {
    if (size == 0 || size > ctx.memory.size()) return absl::InternalError("bad SIMD memory operand size");
    const LinearAddress la = ComputeLinearAddress(regs, in, size);
    if (la.fault) return Completion::Faulted(*la.fault);
    linear = la.address;
    if (form->aligned && (linear % size) != 0) return Completion::Faulted(Fault::GeneralProtection(0));
    if (form->store) {
      // Check the write first (#PF with W, nothing changed), then stage the old bytes: a masked store
      // leaves some of them as they were.
      ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Probe(linear, size, {.write = true, .user = read.user}));
      if (f) return Completion::Faulted(*f);
    }
    ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Read(linear, std::span<uint8_t>(ctx.memory.data(), size), read));
    if (f) return Completion::Faulted(*f);
    disp_at = RewriteMemoryOperandRipRelative(in, code);
  } else {
    code.assign(in.bytes.begin(), in.bytes.begin() + in.length);
  }
  ctx.xsave_image = std::span<uint8_t>(st.image.data(), st.image.size());
  ctx.xstate_mask = st.xcr0;
  RETURN_IF_ERROR(ExecuteNatively(code, disp_at, ctx));
  switch (ctx.fault_signal) {
    case 0:
      break;
    case SIGFPE:
      return Completion::Faulted((regs.cr4 & kCr4Osxmmexcpt) ? Fault{kVectorSimdFloatingPoint, std::nullopt, 0}
                                                             : Fault::InvalidOpcode());
    case SIGSEGV:
    case SIGBUS:
      return Completion::Faulted(Fault::GeneralProtection(0));
    default:  // SIGILL: an encoding this CPU does not have
      return Completion::Faulted(Fault::InvalidOpcode());
  }
  if (in.has_memory_operand() && form->store) {
    ASSIGN_OR_RETURN(std::optional<Fault> f,
                     cpu.Write(linear, std::span<const uint8_t>(ctx.memory.data(), size),
                               {.write = true, .user = read.user}));
    if (f) return Completion::Faulted(*f);
  }
  RETURN_IF_ERROR(cpu.SetExtendedState(st));
  regs.gpr = ctx.gpr;
  regs.rflags = (regs.rflags & ~kArithmeticFlags) | (ctx.rflags & kArithmeticFlags);
  return Completion::Retired();
}

}  // namespace coalesce
