// A KVM VM fd. Memory slots, vCPU creation and VM-wide state.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "hypervisor/base/unique_fd.h"
#include "hypervisor/kvm/vcpu_fd.h"

namespace coalesce {

class VmFd final {
 public:
  VmFd(UniqueFd fd, int vcpu_mmap_size) : fd_(std::move(fd)), vcpu_mmap_size_(vcpu_mmap_size) {}

  absl::Status SetUserMemoryRegion(uint32_t slot, uint64_t guest_phys, uint64_t size, void* host,
                                   uint32_t flags = 0);
  // `id` is the vCPU's global id, which is also its APIC id.
  [[nodiscard]] absl::StatusOr<VcpuFd> CreateVcpu(uint32_t id);
  // Needed on Intel before the first KVM_RUN; harmless elsewhere.
  absl::Status SetTssAddr(uint64_t addr);
  // KVM_IOEVENTFD: a guest write of `value` (`len` bytes) to MMIO `addr` signals `eventfd` in the kernel, with no
  // exit to user space (a virtio queue notify).
  absl::Status AddMmioEventFd(uint64_t addr, uint32_t len, uint64_t value, int eventfd);
  // KVM_REGISTER_COALESCED_MMIO: the guest's writes to [addr, addr + size) go to the coalesced MMIO ring
  // (CoalescedMmioRing) instead of exiting. Only for registers whose writes may take effect late: see the ring.
  absl::Status CoalesceMmioWrites(uint64_t addr, uint32_t size);
  // Which page of a vCPU's kvm_run mapping holds the coalesced MMIO ring; 0 where KVM has none.
  [[nodiscard]] int CoalescedMmioPage() const { return CheckExtension(KVM_CAP_COALESCED_MMIO); }
  absl::Status SetIdentityMapAddr(uint64_t addr);
  [[nodiscard]] absl::StatusOr<kvm_clock_data> GetClock() const;
  absl::Status SetClock(const kvm_clock_data& data);
  [[nodiscard]] int CheckExtension(int cap) const;
  // Whether this KVM can hand chosen MSRs to user space (KVM_CAP_X86_USER_SPACE_MSR and KVM_CAP_X86_MSR_FILTER,
  // Linux 5.10+).
  [[nodiscard]] bool CanSendMsrsToUserSpace() const;
  // The guest's RDMSR and WRMSR of these MSRs (at most 16) exit to user space (exit::MsrRead / exit::MsrWrite);
  // every other MSR stays KVM's. Replaces an earlier list.
  absl::Status SendMsrsToUserSpace(std::span<const uint32_t> msrs);
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  int vcpu_mmap_size_;
};

}  // namespace coalesce
