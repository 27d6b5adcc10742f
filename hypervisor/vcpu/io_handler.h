// Who serves a vCPU's port and MMIO exits (everything but its own local APIC page). At home this is the
// device bus; on an edge node it forwards the access to the home node. The vCPU loop never knows which.
#pragma once

#include <cstdint>
#include <span>

namespace coalesce {

class IoHandler {
 public:
  virtual ~IoHandler() = default;
  virtual void PioRead(uint32_t vcpu_id, uint16_t port, std::span<uint8_t> data) = 0;
  virtual void PioWrite(uint32_t vcpu_id, uint16_t port, std::span<const uint8_t> data) = 0;
  virtual void MmioRead(uint32_t vcpu_id, uint64_t addr, std::span<uint8_t> data) = 0;
  virtual void MmioWrite(uint32_t vcpu_id, uint64_t addr, std::span<const uint8_t> data) = 0;
};

}  // namespace coalesce
