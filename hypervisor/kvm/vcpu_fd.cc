#include "hypervisor/kvm/vcpu_fd.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/kvm/kvm_abi.h"

namespace coalesce {
namespace {

template <typename T>
absl::StatusOr<T> GetStruct(int fd, unsigned long req, const char* what) {
  T value{};
  if (::ioctl(fd, req, &value) < 0) return ErrnoStatus(what);
  return value;
}

template <typename T>
absl::Status SetStruct(int fd, unsigned long req, const T& value, const char* what) {
  if (::ioctl(fd, req, &value) < 0) return ErrnoStatus(what);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VcpuExit> VcpuFd::Run() {
  if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
    if (errno == EINTR || errno == EAGAIN) return exit::Interrupted{};
    return ErrnoStatus("KVM_RUN");
  }
  return DecodeExit(run());
}

absl::StatusOr<kvm_regs> VcpuFd::GetRegs() const { return GetStruct<kvm_regs>(fd_.get(), KVM_GET_REGS, "KVM_GET_REGS"); }
absl::Status VcpuFd::SetRegs(const kvm_regs& r) { return SetStruct(fd_.get(), KVM_SET_REGS, r, "KVM_SET_REGS"); }
absl::StatusOr<kvm_sregs> VcpuFd::GetSregs() const { return GetStruct<kvm_sregs>(fd_.get(), KVM_GET_SREGS, "KVM_GET_SREGS"); }
absl::Status VcpuFd::SetSregs(const kvm_sregs& s) { return SetStruct(fd_.get(), KVM_SET_SREGS, s, "KVM_SET_SREGS"); }
absl::StatusOr<kvm_fpu> VcpuFd::GetFpu() const { return GetStruct<kvm_fpu>(fd_.get(), KVM_GET_FPU, "KVM_GET_FPU"); }
absl::Status VcpuFd::SetFpu(const kvm_fpu& f) { return SetStruct(fd_.get(), KVM_SET_FPU, f, "KVM_SET_FPU"); }
absl::StatusOr<std::vector<uint8_t>> VcpuFd::GetXsave() const {
  std::vector<uint8_t> image(kvm_abi::kXsaveSize, 0);
  if (::ioctl(fd_.get(), kvm_abi::kGetXsave, image.data()) < 0) return ErrnoStatus("KVM_GET_XSAVE");
  return image;
}
absl::Status VcpuFd::SetXsave(std::span<const uint8_t> image) {
  if (image.size() > kvm_abi::kXsaveSize) {
    return absl::InvalidArgumentError(absl::StrFormat("KVM_SET_XSAVE: %u bytes, at most %u", image.size(),
                                                      kvm_abi::kXsaveSize));
  }
  std::vector<uint8_t> padded(kvm_abi::kXsaveSize, 0);
  std::copy(image.begin(), image.end(), padded.begin());
  if (::ioctl(fd_.get(), kvm_abi::kSetXsave, padded.data()) < 0) return ErrnoStatus("KVM_SET_XSAVE");
  return absl::OkStatus();
}
absl::StatusOr<kvm_debugregs> VcpuFd::GetDebugRegs() const {
  return GetStruct<kvm_debugregs>(fd_.get(), KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS");
}
absl::Status VcpuFd::SetDebugRegs(const kvm_debugregs& d) {
  return SetStruct(fd_.get(), KVM_SET_DEBUGREGS, d, "KVM_SET_DEBUGREGS");
}
absl::StatusOr<kvm_xcrs> VcpuFd::GetXcrs() const { return GetStruct<kvm_xcrs>(fd_.get(), KVM_GET_XCRS, "KVM_GET_XCRS"); }
absl::Status VcpuFd::SetXcrs(const kvm_xcrs& x) { return SetStruct(fd_.get(), KVM_SET_XCRS, x, "KVM_SET_XCRS"); }
absl::StatusOr<kvm_vcpu_events> VcpuFd::GetVcpuEvents() const {
  return GetStruct<kvm_vcpu_events>(fd_.get(), KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS");
}
absl::Status VcpuFd::SetVcpuEvents(const kvm_vcpu_events& e) {
  return SetStruct(fd_.get(), KVM_SET_VCPU_EVENTS, e, "KVM_SET_VCPU_EVENTS");
}

// kvm_cpuid2 and kvm_msrs are laid out by hand: see kvm_abi.h.
absl::Status VcpuFd::SetCpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  std::vector<uint8_t> buf(kvm_abi::kCpuid2HeaderSize + entries.size() * sizeof(kvm_cpuid_entry2));
  uint32_t n = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.data(), &n, sizeof(n));
  std::memcpy(buf.data() + kvm_abi::kCpuid2HeaderSize, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  if (::ioctl(fd_.get(), kvm_abi::kSetCpuid2, buf.data()) < 0) return ErrnoStatus("KVM_SET_CPUID2");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> VcpuFd::GetMsrs(const std::vector<uint32_t>& indices) const {
  std::vector<uint8_t> buf(kvm_abi::kMsrsHeaderSize + indices.size() * sizeof(kvm_msr_entry));
  uint32_t n = static_cast<uint32_t>(indices.size());
  std::memcpy(buf.data(), &n, sizeof(n));
  for (size_t i = 0; i < indices.size(); ++i) {
    kvm_msr_entry e{};
    e.index = indices[i];
    std::memcpy(buf.data() + kvm_abi::kMsrsHeaderSize + i * sizeof(e), &e, sizeof(e));
  }
  int got = ::ioctl(fd_.get(), kvm_abi::kGetMsrs, buf.data());
  if (got < 0) return ErrnoStatus("KVM_GET_MSRS");
  if (static_cast<size_t>(got) != indices.size()) {
    return absl::InternalError(absl::StrFormat("KVM_GET_MSRS: MSR %#x not supported", indices[got]));
  }
  std::vector<uint64_t> out(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    kvm_msr_entry e{};
    std::memcpy(&e, buf.data() + kvm_abi::kMsrsHeaderSize + i * sizeof(e), sizeof(e));
    out[i] = e.data;
  }
  return out;
}

absl::Status VcpuFd::SetMsrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
  std::vector<uint8_t> buf(kvm_abi::kMsrsHeaderSize + msrs.size() * sizeof(kvm_msr_entry));
  uint32_t n = static_cast<uint32_t>(msrs.size());
  std::memcpy(buf.data(), &n, sizeof(n));
  for (size_t i = 0; i < msrs.size(); ++i) {
    kvm_msr_entry e{};
    e.index = msrs[i].first;
    e.data = msrs[i].second;
    std::memcpy(buf.data() + kvm_abi::kMsrsHeaderSize + i * sizeof(e), &e, sizeof(e));
  }
  int set = ::ioctl(fd_.get(), kvm_abi::kSetMsrs, buf.data());
  if (set < 0) return ErrnoStatus("KVM_SET_MSRS");
  if (static_cast<size_t>(set) != msrs.size()) {
    return absl::InternalError(absl::StrFormat("KVM_SET_MSRS: MSR %#x rejected", msrs[set].first));
  }
  return absl::OkStatus();
}

absl::Status VcpuFd::Interrupt(uint8_t vector) {
  kvm_interrupt irq{};
  irq.irq = vector;
  return SetStruct(fd_.get(), KVM_INTERRUPT, irq, "KVM_INTERRUPT");
}

absl::Status VcpuFd::Nmi() {
  if (::ioctl(fd_.get(), KVM_NMI, 0) < 0) return ErrnoStatus("KVM_NMI");
  return absl::OkStatus();
}

absl::StatusOr<kvm_translation> VcpuFd::Translate(uint64_t gva) const {
  kvm_translation t{};
  t.linear_address = gva;
  if (::ioctl(fd_.get(), KVM_TRANSLATE, &t) < 0) return ErrnoStatus("KVM_TRANSLATE");
  return t;
}

absl::Status VcpuFd::SetGuestDebug(const kvm_guest_debug& dbg) {
  return SetStruct(fd_.get(), KVM_SET_GUEST_DEBUG, dbg, "KVM_SET_GUEST_DEBUG");
}

absl::Status VcpuFd::SetTscKhz(uint32_t khz) {
  if (::ioctl(fd_.get(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)) < 0) return ErrnoStatus("KVM_SET_TSC_KHZ");
  return absl::OkStatus();
}

absl::Status VcpuFd::NotifyGuestPaused() {
  // EINVAL: the guest set up no kvmclock page on this vCPU (a non-Linux test guest, or a CPU never started).
  if (::ioctl(fd_.get(), KVM_KVMCLOCK_CTRL, 0) < 0 && errno != EINVAL) return ErrnoStatus("KVM_KVMCLOCK_CTRL");
  return absl::OkStatus();
}

absl::StatusOr<int64_t> VcpuFd::GetTscOffset() const {
  int64_t offset = 0;
  kvm_device_attr attr{};
  attr.group = KVM_VCPU_TSC_CTRL;
  attr.attr = KVM_VCPU_TSC_OFFSET;
  attr.addr = reinterpret_cast<uint64_t>(&offset);
  if (::ioctl(fd_.get(), KVM_GET_DEVICE_ATTR, &attr) < 0) return ErrnoStatus("KVM_GET_DEVICE_ATTR(TSC offset)");
  return offset;
}

absl::Status VcpuFd::SetTscOffset(int64_t offset) {
  kvm_device_attr attr{};
  attr.group = KVM_VCPU_TSC_CTRL;
  attr.attr = KVM_VCPU_TSC_OFFSET;
  attr.addr = reinterpret_cast<uint64_t>(&offset);
  if (::ioctl(fd_.get(), KVM_SET_DEVICE_ATTR, &attr) < 0) return ErrnoStatus("KVM_SET_DEVICE_ATTR(TSC offset)");
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> VcpuFd::GetTscKhz() const {
  int r = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (r < 0) return ErrnoStatus("KVM_GET_TSC_KHZ");
  return static_cast<uint32_t>(r);
}

}  // namespace coalesce
