// A shadow virtqueue: the back end runs a split ring that the front end owns, and the front end moves requests
// between it and the guest's ring. Used where the back end must not read the guest's rings itself: in a
// coalesced guest, whose ring and buffer pages may live on another node (the DSM keeps them coherent only for
// accesses that fault, and the back end's do not). The front end reads the guest's ring through the home's
// mapping (faults resolved by the DSM), acquires each request's buffers with the DmaGuard (pinned at home) before
// the back end sees it, and releases them when the back end has used it. Data is not copied: shadow descriptors
// point at the guest's buffers. The front end also knows every request in flight, so when the back end dies
// each one completes with VIRTIO_BLK_S_IOERR instead of hanging the guest.
//
// Not thread-safe: one thread (the device's worker) drives it. Guest input is checked: a descriptor chain that
// loops, leaves guest RAM, or uses indirect descriptors (not offered) is completed at once with nothing
// transferred, counted and logged.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "devmodel/virtio/dma_guard.h"
#include "devmodel/virtio/virtio_device.h"
#include "devmodel/virtio/virtqueue.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

class ShadowVirtqueue final {
 public:
  // Bytes of shadow memory one queue of `size` needs (descriptor table, available ring, used ring, each
  // page-aligned).
  static uint64_t ShadowBytes(uint16_t size);

  // `shadow` (host address, ShadowBytes(size) bytes, zeroed) is the back end's ring memory.
  ShadowVirtqueue(const GuestMemory* guest, const virtio::QueueConfig& queue, uint8_t* shadow,
                  virtio::DmaGuard* guard);
  ~ShadowVirtqueue();

  // Host addresses of the shadow ring (for SET_VRING_ADDR).
  [[nodiscard]] uint64_t desc_addr() const;
  [[nodiscard]] uint64_t avail_addr() const;
  [[nodiscard]] uint64_t used_addr() const;

  // Moves the guest's newly available chains to the shadow ring. Returns how many the back end got (kick it if
  // > 0). `*completed` is set when chains were completed to the guest directly (refused, or the back end is
  // gone): raise the interrupt.
  absl::StatusOr<int> ForwardAvailable(bool* completed);
  // Moves the back end's used entries to the guest's used ring, releasing their buffers. Returns how many.
  absl::StatusOr<int> ReturnUsed();
  // The back end is gone: every chain in flight, and every later one, completes with status byte `status`.
  // Returns how many were completed now.
  int FailAll(uint8_t status);
  // The guest reset the device (the back end has stopped the ring): release everything, complete nothing.
  void Abandon();

  [[nodiscard]] uint64_t refused_chains() const { return guest_.refused_chains(); }
  [[nodiscard]] size_t in_flight() const;

 private:
  struct InFlight {
    bool busy = false;
    uint16_t guest_head = 0;
    std::vector<uint16_t> shadow_descs;
    std::vector<std::pair<uint64_t, uint64_t>> buffers;  // acquired (gpa, len)
    uint64_t status_gpa = 0;                             // the last device-writable byte, 0 if none
  };
  // Completes a guest chain without the back end: `status` in its status byte (if it has one).
  absl::Status CompleteAtOnce(const virtio::Chain& chain, uint8_t status);
  void Release(InFlight& f);
  uint8_t* ShadowDesc(uint16_t i) const;

  const GuestMemory* guest_memory_;
  const virtio::QueueConfig queue_;
  virtio::Virtqueue guest_;  // the guest's ring, device side (chains checked there)
  uint8_t* const shadow_;
  virtio::DmaGuard* const guard_;
  std::optional<virtio::Chain> waiting_;  // popped, but the back end holds too many descriptors for it
  uint16_t shadow_avail_idx_ = 0;
  uint16_t shadow_last_used_ = 0;
  std::vector<uint16_t> free_descs_;
  std::vector<InFlight> in_flight_;  // indexed by shadow head
  bool failed_ = false;
  uint8_t fail_status_ = 0;
};

}  // namespace coalesce
