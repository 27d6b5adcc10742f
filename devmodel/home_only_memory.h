// Guest RAM that stays at home, as the home node's MMIO bus sees it. Edge nodes map no memory over a
// --home-only-memory range, so an edge vCPU's load or store there exits like an MMIO access and is forwarded to
// home (vcpu_remote/remote_io_handler.h), where this device performs it on the guest's RAM. Home's own vCPUs
// never come here: for them the range is ordinary RAM in a memslot.
#pragma once

#include <cstdint>
#include <string_view>

#include "hypervisor/bus/bus_device.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

class HomeOnlyMemory final : public BusDevice {
 public:
  // Serves [base, base + size) of `memory` (which must outlive the device).
  HomeOnlyMemory(GuestMemory* memory, uint64_t base) : memory_(memory), base_(base) {}

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "home-only memory"; }

 private:
  GuestMemory* memory_;
  const uint64_t base_;
};

}  // namespace coalesce
