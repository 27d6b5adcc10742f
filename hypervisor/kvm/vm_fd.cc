#include "hypervisor/kvm/vm_fd.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {

absl::Status VmFd::SetUserMemoryRegion(uint32_t slot, uint64_t guest_phys, uint64_t size,
                                       void* host, uint32_t flags) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = guest_phys;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return ErrnoStatus(absl::StrCat("KVM_SET_USER_MEMORY_REGION slot ", slot));
  }
  return absl::OkStatus();
}

absl::StatusOr<VcpuFd> VmFd::CreateVcpu(uint32_t id) {
  int fd = ::ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) return ErrnoStatus(absl::StrCat("KVM_CREATE_VCPU ", id));
  UniqueFd owned(fd);
  ASSIGN_OR_RETURN(Mapping run, Mapping::Map(vcpu_mmap_size_, PROT_READ | PROT_WRITE, MAP_SHARED,
                                              fd, 0, "mmap kvm_run"));
  return VcpuFd(std::move(owned), std::move(run), id);
}

absl::Status VmFd::SetTssAddr(uint64_t addr) {
  if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0) {
    return ErrnoStatus("KVM_SET_TSS_ADDR");
  }
  return absl::OkStatus();
}

absl::Status VmFd::AddMmioEventFd(uint64_t addr, uint32_t len, uint64_t value, int eventfd) {
  kvm_ioeventfd io{};
  io.datamatch = value;
  io.addr = addr;
  io.len = len;
  io.fd = eventfd;
  io.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
  if (::ioctl(fd_.get(), KVM_IOEVENTFD, &io) < 0) return ErrnoStatus("KVM_IOEVENTFD");
  return absl::OkStatus();
}

absl::Status VmFd::CoalesceMmioWrites(uint64_t addr, uint32_t size) {
  kvm_coalesced_mmio_zone zone{};
  zone.addr = addr;
  zone.size = size;
  if (::ioctl(fd_.get(), KVM_REGISTER_COALESCED_MMIO, &zone) < 0) return ErrnoStatus("KVM_REGISTER_COALESCED_MMIO");
  return absl::OkStatus();
}

absl::Status VmFd::SetIdentityMapAddr(uint64_t addr) {
  if (::ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) {
    return ErrnoStatus("KVM_SET_IDENTITY_MAP_ADDR");
  }
  return absl::OkStatus();
}

absl::StatusOr<kvm_clock_data> VmFd::GetClock() const {
  kvm_clock_data data{};
  if (::ioctl(fd_.get(), KVM_GET_CLOCK, &data) < 0) return ErrnoStatus("KVM_GET_CLOCK");
  return data;
}

absl::Status VmFd::SetClock(const kvm_clock_data& data) {
  kvm_clock_data copy = data;
  if (::ioctl(fd_.get(), KVM_SET_CLOCK, &copy) < 0) return ErrnoStatus("KVM_SET_CLOCK");
  return absl::OkStatus();
}

int VmFd::CheckExtension(int cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

bool VmFd::CanSendMsrsToUserSpace() const {
  // KVM answers 1 for the first (not the exit reasons it knows): the filter reason came with the filter itself.
  return CheckExtension(KVM_CAP_X86_USER_SPACE_MSR) != 0 && CheckExtension(KVM_CAP_X86_MSR_FILTER) != 0;
}

absl::Status VmFd::SendMsrsToUserSpace(std::span<const uint32_t> msrs) {
  if (msrs.size() > KVM_MSR_FILTER_MAX_RANGES) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", KVM_MSR_FILTER_MAX_RANGES, " MSRs, not ", msrs.size()));
  }
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
  cap.args[0] = KVM_MSR_EXIT_REASON_FILTER;  // only the MSRs the filter denies exit, not every unknown one
  if (::ioctl(fd_.get(), KVM_ENABLE_CAP, &cap) < 0) return ErrnoStatus("KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)");
  // One range per MSR, its single bitmap bit 0: denied to KVM for reads and writes, so the access exits.
  static constexpr uint8_t kDenied = 0;
  kvm_msr_filter filter{};
  filter.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
  for (size_t i = 0; i < msrs.size(); ++i) {
    filter.ranges[i].flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
    filter.ranges[i].nmsrs = 1;
    filter.ranges[i].base = msrs[i];
    filter.ranges[i].bitmap = const_cast<uint8_t*>(&kDenied);  // KVM copies it in; never written
  }
  if (::ioctl(fd_.get(), KVM_X86_SET_MSR_FILTER, &filter) < 0) return ErrnoStatus("KVM_X86_SET_MSR_FILTER");
  return absl::OkStatus();
}

}  // namespace coalesce
