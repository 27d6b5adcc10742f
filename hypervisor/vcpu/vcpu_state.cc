#include "hypervisor/vcpu/vcpu_state.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {
namespace {

constexpr uint8_t kWireVersion = 1;
static_assert(sizeof(LocalApicState) == 48 * 4 + 8 + 8, "LocalApicState must have no padding: it travels as bytes");
constexpr size_t kMaxXsave = 1 << 16;
constexpr size_t kMaxMsrs = 256;

template <typename T>
void PutPod(std::vector<uint8_t>& out, const T& v) {
  const uint32_t n = sizeof(T);
  out.insert(out.end(), reinterpret_cast<const uint8_t*>(&n), reinterpret_cast<const uint8_t*>(&n) + 4);
  out.insert(out.end(), reinterpret_cast<const uint8_t*>(&v), reinterpret_cast<const uint8_t*>(&v) + sizeof(T));
}

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool Raw(void* dst, size_t n) {
    if (in_.size() - pos_ < n) return false;
    std::memcpy(dst, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  // A length-prefixed part that must be exactly sizeof(T).
  template <typename T>
  bool Pod(T* v) {
    uint32_t n = 0;
    return Raw(&n, 4) && n == sizeof(T) && Raw(v, sizeof(T));
  }
  [[nodiscard]] bool done() const { return pos_ == in_.size(); }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

}  // namespace

const std::vector<uint32_t> kMigratedMsrs = {
    0x174, 0x175, 0x176,  // IA32_SYSENTER_CS/ESP/EIP
    0x277,                // IA32_PAT
    0x1a0,                // IA32_MISC_ENABLE
    0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,  // STAR, LSTAR, CSTAR, SFMASK
    0xc0000102,           // KERNEL_GS_BASE
    0xc0000103,           // TSC_AUX
};

absl::StatusOr<VcpuState> CaptureVcpuState(VcpuFd& vcpu) {
  // KVM completes a PIO/MMIO exit's instruction on the next KVM_RUN; until then the registers are mid-way.
  vcpu.run()->immediate_exit = 1;
  absl::StatusOr<VcpuExit> flushed = vcpu.Run();
  vcpu.run()->immediate_exit = 0;
  if (!flushed.ok()) return flushed.status();
  VcpuState s;
  ASSIGN_OR_RETURN(s.regs, vcpu.GetRegs());
  ASSIGN_OR_RETURN(s.sregs, vcpu.GetSregs());
  ASSIGN_OR_RETURN(s.xsave, vcpu.GetXsave());
  ASSIGN_OR_RETURN(s.xcrs, vcpu.GetXcrs());
  ASSIGN_OR_RETURN(s.debugregs, vcpu.GetDebugRegs());
  ASSIGN_OR_RETURN(s.events, vcpu.GetVcpuEvents());
  for (uint32_t index : kMigratedMsrs) {
    // One at a time: an MSR this KVM does not know is left out, not fatal (the target has the same KVM rules).
    if (absl::StatusOr<std::vector<uint64_t>> v = vcpu.GetMsrs({index}); v.ok()) s.msrs.emplace_back(index, (*v)[0]);
  }
  if (absl::StatusOr<int64_t> offset = vcpu.GetTscOffset(); offset.ok()) s.tsc_offset = *offset;
  return s;
}

absl::Status RestoreVcpuState(VcpuFd& vcpu, const VcpuState& s) {
  RETURN_IF_ERROR(vcpu.SetSregs(s.sregs));
  RETURN_IF_ERROR(vcpu.SetRegs(s.regs));
  RETURN_IF_ERROR(vcpu.SetXcrs(s.xcrs));  // before XSAVE: the image's components must be enabled in XCR0
  RETURN_IF_ERROR(vcpu.SetXsave(s.xsave));
  RETURN_IF_ERROR(vcpu.SetDebugRegs(s.debugregs));
  if (!s.msrs.empty()) RETURN_IF_ERROR(vcpu.SetMsrs(s.msrs));
  if (s.tsc_offset) RETURN_IF_ERROR(vcpu.SetTscOffset(*s.tsc_offset));
  return vcpu.SetVcpuEvents(s.events);
}

std::vector<uint8_t> EncodeVcpuState(const VcpuState& s) {
  std::vector<uint8_t> out = {kWireVersion};
  PutPod(out, s.regs);
  PutPod(out, s.sregs);
  const uint32_t xsave_len = static_cast<uint32_t>(s.xsave.size());
  out.insert(out.end(), reinterpret_cast<const uint8_t*>(&xsave_len), reinterpret_cast<const uint8_t*>(&xsave_len) + 4);
  out.insert(out.end(), s.xsave.begin(), s.xsave.end());
  PutPod(out, s.xcrs);
  PutPod(out, s.debugregs);
  PutPod(out, s.events);
  PutPod(out, s.lapic);
  const uint32_t msrs = static_cast<uint32_t>(s.msrs.size());
  out.insert(out.end(), reinterpret_cast<const uint8_t*>(&msrs), reinterpret_cast<const uint8_t*>(&msrs) + 4);
  for (const auto& [index, value] : s.msrs) {
    out.insert(out.end(), reinterpret_cast<const uint8_t*>(&index), reinterpret_cast<const uint8_t*>(&index) + 4);
    out.insert(out.end(), reinterpret_cast<const uint8_t*>(&value), reinterpret_cast<const uint8_t*>(&value) + 8);
  }
  const uint8_t has_tsc = s.tsc_offset ? 1 : 0;
  out.push_back(has_tsc);
  const int64_t tsc = s.tsc_offset.value_or(0);
  out.insert(out.end(), reinterpret_cast<const uint8_t*>(&tsc), reinterpret_cast<const uint8_t*>(&tsc) + 8);
  return out;
}

absl::StatusOr<VcpuState> DecodeVcpuState(std::span<const uint8_t> bytes) {
  Reader r(bytes);
  VcpuState s;
  uint8_t version = 0;
  auto bad = [](const char* what) { return absl::InvalidArgumentError(absl::StrFormat("vCPU state: %s", what)); };
  if (!r.Raw(&version, 1)) return bad("empty");
  if (version != kWireVersion) {
    return absl::InvalidArgumentError(absl::StrFormat("vCPU state: version %u, expected %u", version, kWireVersion));
  }
  if (!r.Pod(&s.regs) || !r.Pod(&s.sregs)) return bad("truncated registers");
  uint32_t xsave_len = 0;
  if (!r.Raw(&xsave_len, 4) || xsave_len > kMaxXsave) return bad("bad XSAVE length");
  s.xsave.resize(xsave_len);
  if (!r.Raw(s.xsave.data(), xsave_len)) return bad("truncated XSAVE image");
  if (!r.Pod(&s.xcrs) || !r.Pod(&s.debugregs) || !r.Pod(&s.events)) return bad("truncated XCRs, debug registers or events");
  if (!r.Pod(&s.lapic)) return bad("truncated local APIC state");
  uint32_t msrs = 0;
  if (!r.Raw(&msrs, 4) || msrs > kMaxMsrs) return bad("bad MSR count");
  for (uint32_t i = 0; i < msrs; ++i) {
    uint32_t index = 0;
    uint64_t value = 0;
    if (!r.Raw(&index, 4) || !r.Raw(&value, 8)) return bad("truncated MSRs");
    s.msrs.emplace_back(index, value);
  }
  uint8_t has_tsc = 0;
  int64_t tsc = 0;
  if (!r.Raw(&has_tsc, 1) || has_tsc > 1 || !r.Raw(&tsc, 8)) return bad("truncated TSC offset");
  if (has_tsc) s.tsc_offset = tsc;
  if (!r.done()) return bad("trailing bytes");
  return s;
}

}  // namespace coalesce
