// A GuestCpu held entirely in memory, for running the executor without KVM: registers, a standard-format
// extended-state image, and guest-linear memory as one window [base, base+size) with per-page permissions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "hypervisor/emul/guest_cpu.h"

namespace coalesce {

class SoftwareCpu final : public GuestCpu {
 public:
  SoftwareCpu(uint64_t base, uint64_t size);

  absl::StatusOr<RegisterState> GetRegisters() override { return regs; }
  absl::Status SetRegisters(const RegisterState& r) override;
  absl::StatusOr<ExtendedState> GetExtendedState() override { return extended; }
  absl::Status SetExtendedState(const ExtendedState& s) override;
  const XsaveLayout& xsave_layout() const override { return layout; }
  AccessResult Read(uint64_t linear, std::span<uint8_t> out, MemoryAccess access) override;
  AccessResult Write(uint64_t linear, std::span<const uint8_t> in, MemoryAccess access) override;
  AccessResult Probe(uint64_t linear, uint64_t length, MemoryAccess access) override;
  AccessResult CompareExchange(uint64_t linear, std::span<const uint8_t> expected, std::span<const uint8_t> desired,
                               std::span<uint8_t> old, MemoryAccess access) override;
  absl::Status InjectException(const Fault& fault) override;

  // Host pointer of a linear address inside the window.
  uint8_t* At(uint64_t linear) { return memory.data() + (linear - base); }
  void SetPage(uint64_t linear, bool present, bool writable) { pages[linear >> 12] = {present, writable}; }

  RegisterState regs;
  ExtendedState extended;
  XsaveLayout layout;
  std::vector<uint8_t> memory;
  uint64_t base;
  std::vector<Fault> injected;
  int register_writes = 0;
  int state_writes = 0;

 private:
  struct PagePermission {
    bool present = true;
    bool writable = true;
  };
  std::optional<Fault> Check(uint64_t linear, uint64_t length, MemoryAccess access) const;
  std::map<uint64_t, PagePermission> pages;
};

}  // namespace coalesce
