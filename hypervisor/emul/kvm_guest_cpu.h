// GuestCpu over a real vCPU: registers through KVM_GET/SET_REGS and SREGS, extended state through
// KVM_GET/SET_XSAVE (+ XCR0 from KVM_GET_XCRS, IA32_XSS from KVM_GET_MSRS), exceptions through
// KVM_SET_VCPU_EVENTS, guest-linear memory through KVM_TRANSLATE plus a page walk for permissions, and
// guest RAM through GuestMemory's host mapping (atomics on that mapping for locked instructions).
//
// Usage: construct, Load(), run the executor, Commit(). Nothing reaches KVM before Commit().
#pragma once

#include <linux/kvm.h>

#include <optional>

#include "absl/status/statusor.h"
#include "hypervisor/emul/guest_cpu.h"
#include "hypervisor/emul/guest_page_walker.h"
#include "hypervisor/kvm/vcpu_fd.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

class KvmGuestCpu final : public GuestCpu {
 public:
  KvmGuestCpu(VcpuFd& vcpu, const GuestMemory& memory);

  // Reads registers and special registers. Must precede everything else.
  absl::Status Load();
  // Writes back what the instruction changed and queues the exception it raised.
  absl::Status Commit();

  absl::StatusOr<RegisterState> GetRegisters() override;
  absl::Status SetRegisters(const RegisterState& regs) override;
  absl::StatusOr<ExtendedState> GetExtendedState() override;
  absl::Status SetExtendedState(const ExtendedState& state) override;
  const XsaveLayout& xsave_layout() const override { return layout_; }
  AccessResult Read(uint64_t linear, std::span<uint8_t> out, MemoryAccess access) override;
  AccessResult Write(uint64_t linear, std::span<const uint8_t> in, MemoryAccess access) override;
  AccessResult Probe(uint64_t linear, uint64_t length, MemoryAccess access) override;
  AccessResult CompareExchange(uint64_t linear, std::span<const uint8_t> expected, std::span<const uint8_t> desired,
                               std::span<uint8_t> old, MemoryAccess access) override;
  absl::Status InjectException(const Fault& fault) override;

  // Guest-physical address of `linear`, or the fault an access would raise.
  absl::StatusOr<PageWalk> Translate(uint64_t linear, MemoryAccess access);

 private:
  // Host spans covering [linear, linear+length), one per page, or the first fault.
  struct Pieces {
    std::vector<std::span<uint8_t>> spans;
    std::optional<Fault> fault;
  };
  absl::StatusOr<Pieces> Map(uint64_t linear, uint64_t length, MemoryAccess access);

  VcpuFd& vcpu_;
  const GuestMemory& memory_;
  XsaveLayout layout_;
  kvm_regs regs_{};
  kvm_sregs sregs_{};
  bool regs_dirty_ = false;
  std::optional<ExtendedState> extended_;
  bool extended_dirty_ = false;
  std::optional<Fault> pending_;
};

}  // namespace coalesce
