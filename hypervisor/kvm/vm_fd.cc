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

}  // namespace coalesce
