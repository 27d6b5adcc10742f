#include "hypervisor/emul/kvm_guest_cpu.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/emul/host_atomics.h"
#include "hypervisor/kvm/kvm_abi.h"

namespace coalesce {
namespace {

constexpr uint32_t kMsrIa32Xss = 0xda0;
constexpr uint64_t kEferLma = 1ull << 10;
constexpr size_t kKvmXsaveBytes = kvm_abi::kXsaveSize;  // the legacy KVM_GET_XSAVE image

// kvm_regs in ModRM order (rax rcx rdx rbx rsp rbp rsi rdi r8..r15).
__u64* GprSlot(kvm_regs& r, int index) {
  __u64* const slots[16] = {&r.rax, &r.rcx, &r.rdx, &r.rbx, &r.rsp, &r.rbp, &r.rsi, &r.rdi,
                               &r.r8,  &r.r9,  &r.r10, &r.r11, &r.r12, &r.r13, &r.r14, &r.r15};
  return slots[index];
}

// IA32_XSS, or 0 where KVM does not know the MSR (no XSAVES for the guest).
uint64_t ReadXss(const VcpuFd& vcpu) {
  auto values = vcpu.GetMsrs({kMsrIa32Xss});
  return values.ok() ? (*values)[0] : 0;
}

absl::StatusOr<uint64_t> ReadXcr0(const VcpuFd& vcpu) {
  ASSIGN_OR_RETURN(kvm_xcrs xcrs, vcpu.GetXcrs());
  for (uint32_t i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; ++i) {
    if (xcrs.xcrs[i].xcr == 0) return xcrs.xcrs[i].value;
  }
  return absl::InternalError("KVM_GET_XCRS returned no XCR0");
}

// Serialises the rare page-crossing cmpxchg8b, which no host instruction can do atomically.
std::mutex g_split_lock;

// CPUID is deterministic for the process and may itself trap to a hypervisor below us: read it once, not on
// every completed instruction.
const XsaveLayout& HostXsaveLayout() {
  static const XsaveLayout layout = XsaveLayout::FromHostCpuid();
  return layout;
}
}  // namespace

KvmGuestCpu::KvmGuestCpu(VcpuFd& vcpu, const GuestMemory& memory)
    : vcpu_(vcpu), memory_(memory), layout_(HostXsaveLayout()) {}

absl::Status KvmGuestCpu::Load() {
  ASSIGN_OR_RETURN(regs_, vcpu_.GetRegs());
  ASSIGN_OR_RETURN(sregs_, vcpu_.GetSregs());
  return absl::OkStatus();
}

absl::StatusOr<RegisterState> KvmGuestCpu::GetRegisters() {
  RegisterState r;
  for (int i = 0; i < 16; ++i) r.gpr[i] = *GprSlot(regs_, i);
  r.rip = regs_.rip;
  r.rflags = regs_.rflags;
  r.cr0 = sregs_.cr0;
  r.cr4 = sregs_.cr4;
  r.efer = sregs_.efer;
  const kvm_segment* segs[6] = {&sregs_.es, &sregs_.cs, &sregs_.ss, &sregs_.ds, &sregs_.fs, &sregs_.gs};
  for (int i = 0; i < 6; ++i) r.segment_base[i] = segs[i]->base;
  r.cpl = sregs_.ss.dpl;  // SS.DPL is the CPL (what KVM's own get_cpl reports)
  r.long_mode_64 = (sregs_.efer & kEferLma) && sregs_.cs.l;
  return r;
}

absl::Status KvmGuestCpu::SetRegisters(const RegisterState& r) {
  for (int i = 0; i < 16; ++i) *GprSlot(regs_, i) = r.gpr[i];
  regs_.rip = r.rip;
  regs_.rflags = r.rflags;
  regs_dirty_ = true;
  return absl::OkStatus();
}

absl::StatusOr<ExtendedState> KvmGuestCpu::GetExtendedState() {
  if (!extended_) {
    ExtendedState st;
    ASSIGN_OR_RETURN(st.image, vcpu_.GetXsave());
    ASSIGN_OR_RETURN(st.xcr0, ReadXcr0(vcpu_));
    st.xss = ReadXss(vcpu_);
    if (layout_.StandardSize(st.xcr0) > kKvmXsaveBytes) {
      return absl::UnimplementedError(absl::StrFormat(
          "guest XCR0 %#x needs %d bytes of XSAVE state, more than KVM_GET_XSAVE carries", st.xcr0,
          layout_.StandardSize(st.xcr0)));
    }
    extended_ = std::move(st);
  }
  return *extended_;
}

absl::Status KvmGuestCpu::SetExtendedState(const ExtendedState& state) {
  if (!extended_) return absl::FailedPreconditionError("SetExtendedState before GetExtendedState");
  extended_->image = state.image;
  extended_->image.resize(kKvmXsaveBytes, 0);
  extended_dirty_ = true;
  return absl::OkStatus();
}

absl::StatusOr<PageWalk> KvmGuestCpu::Translate(uint64_t linear, MemoryAccess access) {
  const uint32_t code = (access.write ? kPfWrite : 0) | (access.user ? kPfUser : 0);
  if (!(sregs_.cr0 & kCr0Pg)) return PageWalk{linear, std::nullopt};
  ASSIGN_OR_RETURN(kvm_translation t, vcpu_.Translate(linear));
  if (!t.valid) return PageWalk{0, Fault::PageFault(linear, code)};
  // KVM_TRANSLATE knows where the page is but not who may write it: the walk adds permissions and A/D bits.
  // The guest's tables may sit outside RAM we can see (never for a sane kernel): then KVM's answer stands.
  PagingContext paging{sregs_.cr0, sregs_.cr3, sregs_.cr4, (regs_.rflags & kRflagsAc) != 0};
  auto walk = WalkGuestPageTables(memory_, paging, linear, access);
  if (walk.ok() && walk->fault) return *walk;
  return PageWalk{t.physical_address, std::nullopt};
}

absl::StatusOr<KvmGuestCpu::Pieces> KvmGuestCpu::Map(uint64_t linear, uint64_t length, MemoryAccess access) {
  Pieces out;
  uint64_t done = 0;
  while (done < length) {
    const uint64_t at = linear + done;
    const uint64_t chunk = std::min<uint64_t>(length - done, 4096 - (at & 4095));
    ASSIGN_OR_RETURN(PageWalk w, Translate(at, access));
    if (w.fault) {
      out.fault = w.fault;
      out.spans.clear();
      return out;
    }
    ASSIGN_OR_RETURN(std::span<uint8_t> span, memory_.HostSpan(w.gpa, chunk));
    out.spans.push_back(span);
    done += chunk;
  }
  return out;
}

AccessResult KvmGuestCpu::Read(uint64_t linear, std::span<uint8_t> out, MemoryAccess access) {
  ASSIGN_OR_RETURN(Pieces p, Map(linear, out.size(), access));
  if (p.fault) return p.fault;
  size_t at = 0;
  for (auto s : p.spans) {
    std::memcpy(out.data() + at, s.data(), s.size());
    at += s.size();
  }
  return std::optional<Fault>();
}

AccessResult KvmGuestCpu::Write(uint64_t linear, std::span<const uint8_t> in, MemoryAccess access) {
  access.write = true;
  ASSIGN_OR_RETURN(Pieces p, Map(linear, in.size(), access));
  if (p.fault) return p.fault;
  size_t at = 0;
  for (auto s : p.spans) {
    std::memcpy(s.data(), in.data() + at, s.size());
    at += s.size();
  }
  return std::optional<Fault>();
}

AccessResult KvmGuestCpu::Probe(uint64_t linear, uint64_t length, MemoryAccess access) {
  ASSIGN_OR_RETURN(Pieces p, Map(linear, length, access));
  return p.fault;
}

AccessResult KvmGuestCpu::CompareExchange(uint64_t linear, std::span<const uint8_t> expected,
                                          std::span<const uint8_t> desired, std::span<uint8_t> old,
                                          MemoryAccess access) {
  const size_t size = old.size();
  if ((size != 8 && size != 16) || expected.size() != size || desired.size() != size) {
    return absl::InvalidArgumentError("compare-exchange of 8 or 16 bytes only");
  }
  access.write = true;
  ASSIGN_OR_RETURN(Pieces p, Map(linear, size, access));
  if (p.fault) return p.fault;
  if (p.spans.size() == 1 && size == 16 && (reinterpret_cast<uintptr_t>(p.spans[0].data()) & 15) == 0) {
    HostCompareExchange16(p.spans[0].data(), expected.data(), desired.data(), old.data());
  } else if (p.spans.size() == 1 && size == 8) {
    HostCompareExchange8(p.spans[0].data(), expected.data(), desired.data(), old.data());
  } else {
    // A misaligned cmpxchg8b across two pages: no single host instruction spans two separate mappings.
    std::lock_guard<std::mutex> lock(g_split_lock);
    size_t at = 0;
    for (auto s : p.spans) {
      std::memcpy(old.data() + at, s.data(), s.size());
      at += s.size();
    }
    if (std::memcmp(old.data(), expected.data(), size) == 0) {
      at = 0;
      for (auto s : p.spans) {
        std::memcpy(s.data(), desired.data() + at, s.size());
        at += s.size();
      }
    }
  }
  return std::optional<Fault>();
}

absl::Status KvmGuestCpu::InjectException(const Fault& fault) {
  if (pending_) return absl::FailedPreconditionError("two exceptions from one instruction");
  pending_ = fault;
  return absl::OkStatus();
}

absl::Status KvmGuestCpu::Commit() {
  if (regs_dirty_) RETURN_IF_ERROR(vcpu_.SetRegs(regs_));
  if (extended_dirty_) {
    RETURN_IF_ERROR(vcpu_.SetXsave(extended_->image));
  }
  if (pending_) {
    if (pending_->vector == kVectorPageFault) {
      ASSIGN_OR_RETURN(kvm_sregs sregs, vcpu_.GetSregs());
      sregs.cr2 = pending_->cr2;
      RETURN_IF_ERROR(vcpu_.SetSregs(sregs));
    }
    ASSIGN_OR_RETURN(kvm_vcpu_events events, vcpu_.GetVcpuEvents());
    events.exception.injected = 1;
    events.exception.nr = pending_->vector;
    events.exception.has_error_code = pending_->error_code.has_value() ? 1 : 0;
    events.exception.error_code = pending_->error_code.value_or(0);
    // Only the exception changes: flags = 0 leaves NMI-pending, SIPI, SMM and shadow state alone.
    events.flags = 0;
    RETURN_IF_ERROR(vcpu_.SetVcpuEvents(events));
  }
  regs_dirty_ = extended_dirty_ = false;
  pending_.reset();
  return absl::OkStatus();
}

}  // namespace coalesce
