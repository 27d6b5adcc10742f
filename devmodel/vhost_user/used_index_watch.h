// The used-ring indexes a vhost-user back end advances, watched so that a completion can be seen without waiting
// for the back end's call eventfd.
//
// With direct rings the back end writes the guest's used ring in shared memory and then signals its call
// eventfd, which wakes the device's worker thread, which raises the interrupt, which wakes the vCPU: two thread
// wake-ups per completion. A vCPU that is halt-polling (hypervisor/vcpu/halt_poll.h) can instead see the used
// index move and raise the interrupt itself, so the wake-up of the worker no longer delays the guest. Whichever
// of the two comes first claims the new index under the device's lock and raises; the other finds nothing new
// and raises nothing, so a completion gives one interrupt, as before. The poller raises only what the driver
// asks to be interrupted for (its NO_INTERRUPT flag, or used_event under EVENT_IDX), as the back end does, and
// leaves the rest unclaimed for the back end's call.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace coalesce {

class UsedIndexWatch final {
 public:
  static constexpr size_t kMaxQueues = 8;

  // Where one queue's rings say what the poller needs, in this process's mapping of guest memory (which outlives
  // the watch).
  struct Ring {
    const uint16_t* used_idx = nullptr;     // virtq_used.idx, which the back end advances
    const uint16_t* avail_flags = nullptr;  // virtq_avail.flags: VRING_AVAIL_F_NO_INTERRUPT (without EVENT_IDX)
    const uint16_t* used_event = nullptr;   // virtq_avail.used_event, after its ring (with EVENT_IDX; else null)
  };

  // Watches queue `q`, whose back end starts counting at 0 (SET_VRING_BASE 0): index 0 counts as claimed.
  // Under the owner's lock.
  void Watch(uint16_t q, const Ring& ring);
  // Watches nothing (the queues stopped). Under the owner's lock.
  void Clear();
  // Lock-free, any thread: whether some watched index moved since its last claim and the driver asks to be
  // interrupted for it (virtio 1.2, 2.7.10: the NO_INTERRUPT flag, or used_event under EVENT_IDX).
  [[nodiscard]] bool AnyWanted() const;
  // Under the owner's lock: claims the moves AnyWanted() reports; true if any. The others stay unclaimed for
  // the back end's call, which follows the same rule.
  bool ClaimWanted();
  // Under the owner's lock (the back end's call): claims every watched index; true if any had moved.
  bool Claim();

 private:
  static uint16_t Load(const uint16_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
  [[nodiscard]] bool Wanted(size_t q, uint16_t now) const;
  // Claims each watched index that moved (and, if `wanted_only`, that the driver wants an interrupt for).
  bool ClaimMoves(bool wanted_only);

  std::array<std::atomic<const uint16_t*>, kMaxQueues> idx_{};
  std::array<std::atomic<const uint16_t*>, kMaxQueues> flags_{};
  std::array<std::atomic<const uint16_t*>, kMaxQueues> event_{};
  std::array<std::atomic<uint16_t>, kMaxQueues> claimed_{};
};

}  // namespace coalesce
