// The device side of one split virtqueue (virtio 1.2, 2.7) for devices emulated here (virtio-net over TAP):
// takes the chains the driver made available and returns them used, reading and writing guest RAM through
// GuestMemory (in a coalesced guest that mapping is the home's DSM copy, so every access is coherent).
// Guest input is checked: a chain that loops, leaves guest RAM or uses indirect descriptors (not offered) is
// returned at once with nothing transferred, counted and logged. Not thread-safe: one device thread drives it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "devmodel/virtio/virtio_device.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce::virtio {

struct Chain {
  uint16_t head = 0;
  struct Buffer {
    uint64_t gpa;
    uint32_t len;
    bool device_writes;
  };
  std::vector<Buffer> buffers;
  // Bytes the driver gave for the device to read (in order) and to write.
  [[nodiscard]] uint64_t readable_bytes() const;
  [[nodiscard]] uint64_t writable_bytes() const;
};

class Virtqueue final {
 public:
  Virtqueue(const GuestMemory* memory, const QueueConfig& config) : memory_(memory), config_(config) {}

  // The next available chain, or nullopt when the driver has made none available. Refused chains are returned
  // used (length 0) here and skipped.
  absl::StatusOr<std::optional<Chain>> Pop();
  // Gathers the chain's device-readable bytes (at most `max`).
  absl::StatusOr<std::vector<uint8_t>> ReadAll(const Chain& chain, size_t max) const;
  // Scatters `data` over the chain's device-writable buffers; returns the bytes written (less if they are short).
  absl::StatusOr<uint32_t> WriteAll(const Chain& chain, std::span<const uint8_t> data) const;
  // Returns a chain to the driver with `len` bytes written. Call Publish() after a batch.
  absl::Status Push(uint16_t head, uint32_t len);
  absl::Status Publish();
  [[nodiscard]] bool has_unpublished() const { return used_dirty_; }

  [[nodiscard]] uint16_t index() const { return config_.index; }
  [[nodiscard]] uint64_t refused_chains() const { return refused_; }

 private:
  absl::StatusOr<std::vector<Chain::Buffer>> ReadChain(uint16_t head) const;

  const GuestMemory* memory_;
  const QueueConfig config_;
  uint16_t last_avail_ = 0;
  uint16_t used_idx_ = 0;
  bool used_dirty_ = false;
  uint64_t refused_ = 0;
};

}  // namespace coalesce::virtio
