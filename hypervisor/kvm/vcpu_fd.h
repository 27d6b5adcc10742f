// A KVM vCPU fd and its kvm_run mapping. All per-vCPU ioctls live here.
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/base/mapping.h"
#include "hypervisor/base/unique_fd.h"
#include "hypervisor/kvm/vcpu_exit.h"

namespace coalesce {

class VcpuFd final {
 public:
  VcpuFd(UniqueFd fd, Mapping run, uint32_t id)
      : fd_(std::move(fd)), run_(std::move(run)), id_(id) {}

  // KVM_RUN. EINTR (a kick) is returned as exit::Interrupted, not as an error.
  [[nodiscard]] absl::StatusOr<VcpuExit> Run();

  [[nodiscard]] absl::StatusOr<kvm_regs> GetRegs() const;
  absl::Status SetRegs(const kvm_regs& regs);
  [[nodiscard]] absl::StatusOr<kvm_sregs> GetSregs() const;
  absl::Status SetSregs(const kvm_sregs& sregs);
  [[nodiscard]] absl::StatusOr<kvm_fpu> GetFpu() const;
  absl::Status SetFpu(const kvm_fpu& fpu);
  // The legacy KVM_GET/SET_XSAVE image: kvm_abi::kXsaveSize bytes (kvm_xsave's region[]). A byte vector, not
  // kvm_xsave, whose trailing flexible array C++ sizes wrongly (kvm_abi.h). SetXsave pads a shorter image with zeros.
  [[nodiscard]] absl::StatusOr<std::vector<uint8_t>> GetXsave() const;
  absl::Status SetXsave(std::span<const uint8_t> image);
  [[nodiscard]] absl::StatusOr<kvm_vcpu_events> GetVcpuEvents() const;
  absl::Status SetVcpuEvents(const kvm_vcpu_events& events);
  [[nodiscard]] absl::StatusOr<kvm_debugregs> GetDebugRegs() const;
  absl::Status SetDebugRegs(const kvm_debugregs& regs);
  [[nodiscard]] absl::StatusOr<kvm_xcrs> GetXcrs() const;
  absl::Status SetXcrs(const kvm_xcrs& xcrs);
  absl::Status SetCpuid(const std::vector<kvm_cpuid_entry2>& entries);
  // Reads the given MSRs; returns their values in the same order. Fails if KVM knows fewer.
  [[nodiscard]] absl::StatusOr<std::vector<uint64_t>> GetMsrs(const std::vector<uint32_t>& indices) const;
  absl::Status SetMsrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs);
  // KVM_INTERRUPT: queue an external interrupt vector (valid only without an in-kernel irqchip).
  absl::Status Interrupt(uint8_t vector);
  absl::Status Nmi();
  // KVM_TRANSLATE: guest-virtual to guest-physical under the current paging mode.
  [[nodiscard]] absl::StatusOr<kvm_translation> Translate(uint64_t gva) const;
  absl::Status SetGuestDebug(const kvm_guest_debug& dbg);
  absl::Status SetTscKhz(uint32_t khz);
  // KVM_KVMCLOCK_CTRL: tells a guest that uses kvmclock that this vCPU was stopped by its host (its soft-lockup
  // watchdog then does not report the pause). Not while the vCPU runs. A guest without kvmclock: nothing to tell.
  absl::Status NotifyGuestPaused();
  [[nodiscard]] absl::StatusOr<uint32_t> GetTscKhz() const;
  // The vCPU's TSC offset (guest TSC = host TSC + offset) through the KVM_VCPU_TSC_OFFSET attribute (Linux
  // 5.16+). Unlike a write of MSR IA32_TSC, setting it is exact: KVM's TSC-synchronization heuristic, which
  // turns a write within a second of the "expected" value into a copy of the VM's last offset, does not apply.
  [[nodiscard]] absl::StatusOr<int64_t> GetTscOffset() const;
  absl::Status SetTscOffset(int64_t offset);

  // The shared kvm_run page. The vCPU thread owns it, except immediate_exit which a kicker may set.
  [[nodiscard]] kvm_run* run() const { return reinterpret_cast<kvm_run*>(run_.data()); }
  // Page `page` of the kvm_run mapping (VmFd::CoalescedMmioPage()), or null past its end.
  [[nodiscard]] void* MappedPage(int page) const {
    const size_t offset = static_cast<size_t>(page) * 4096;
    return page > 0 && offset + 4096 <= run_.size() ? run_.data() + offset : nullptr;
  }
  [[nodiscard]] uint32_t id() const { return id_; }
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  Mapping run_;
  uint32_t id_;
};

}  // namespace coalesce
