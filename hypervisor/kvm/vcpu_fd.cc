#include "hypervisor/kvm/vcpu_fd.h"

#include <sys/ioctl.h>

#include <cstdlib>
#include <memory>

#include "hypervisor/base/errno_status.h"

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
absl::StatusOr<kvm_xsave> VcpuFd::GetXsave() const { return GetStruct<kvm_xsave>(fd_.get(), KVM_GET_XSAVE, "KVM_GET_XSAVE"); }
absl::Status VcpuFd::SetXsave(const kvm_xsave& x) { return SetStruct(fd_.get(), KVM_SET_XSAVE, x, "KVM_SET_XSAVE"); }
absl::StatusOr<kvm_vcpu_events> VcpuFd::GetVcpuEvents() const {
  return GetStruct<kvm_vcpu_events>(fd_.get(), KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS");
}
absl::Status VcpuFd::SetVcpuEvents(const kvm_vcpu_events& e) {
  return SetStruct(fd_.get(), KVM_SET_VCPU_EVENTS, e, "KVM_SET_VCPU_EVENTS");
}

absl::Status VcpuFd::SetCpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  size_t bytes = sizeof(kvm_cpuid2) + entries.size() * sizeof(kvm_cpuid_entry2);
  std::unique_ptr<kvm_cpuid2, decltype(&std::free)> buf(static_cast<kvm_cpuid2*>(std::calloc(1, bytes)),
                                                        &std::free);
  buf->nent = static_cast<uint32_t>(entries.size());
  std::copy(entries.begin(), entries.end(), buf->entries);
  if (::ioctl(fd_.get(), KVM_SET_CPUID2, buf.get()) < 0) return ErrnoStatus("KVM_SET_CPUID2");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> VcpuFd::GetMsrs(const std::vector<uint32_t>& indices) const {
  size_t bytes = sizeof(kvm_msrs) + indices.size() * sizeof(kvm_msr_entry);
  std::unique_ptr<kvm_msrs, decltype(&std::free)> buf(static_cast<kvm_msrs*>(std::calloc(1, bytes)), &std::free);
  buf->nmsrs = static_cast<uint32_t>(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) buf->entries[i].index = indices[i];
  int n = ::ioctl(fd_.get(), KVM_GET_MSRS, buf.get());
  if (n < 0) return ErrnoStatus("KVM_GET_MSRS");
  if (static_cast<size_t>(n) != indices.size()) return absl::InternalError("KVM_GET_MSRS: MSR not supported");
  std::vector<uint64_t> out(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) out[i] = buf->entries[i].data;
  return out;
}

absl::Status VcpuFd::SetMsrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
  size_t bytes = sizeof(kvm_msrs) + msrs.size() * sizeof(kvm_msr_entry);
  std::unique_ptr<kvm_msrs, decltype(&std::free)> buf(static_cast<kvm_msrs*>(std::calloc(1, bytes)), &std::free);
  buf->nmsrs = static_cast<uint32_t>(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) {
    buf->entries[i].index = msrs[i].first;
    buf->entries[i].data = msrs[i].second;
  }
  int n = ::ioctl(fd_.get(), KVM_SET_MSRS, buf.get());
  if (n < 0) return ErrnoStatus("KVM_SET_MSRS");
  if (static_cast<size_t>(n) != msrs.size()) return absl::InternalError("KVM_SET_MSRS: MSR rejected");
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

absl::StatusOr<uint32_t> VcpuFd::GetTscKhz() const {
  int r = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (r < 0) return ErrnoStatus("KVM_GET_TSC_KHZ");
  return static_cast<uint32_t>(r);
}

}  // namespace coalesce
