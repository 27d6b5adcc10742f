// The used-ring indexes a vhost-user back end advances, watched so that a completion can be seen without waiting
// for the back end's call eventfd.
//
// With direct rings the back end writes the guest's used ring in shared memory and then signals its call
// eventfd, which wakes the device's worker thread, which raises the interrupt, which wakes the vCPU: two thread
// wake-ups per completion. A vCPU that is halt-polling (hypervisor/vcpu/halt_poll.h) can instead see the used
// index move and raise the interrupt itself, so the wake-up of the worker no longer delays the guest. Whichever
// of the two comes first claims the new index under the device's lock and raises; the other finds nothing new
// and raises nothing, so a completion gives one interrupt, as before. An index that moved without the back
// end's call (it suppresses calls under EVENT_IDX) may raise an interrupt the back end would not have: a
// spurious interrupt, which every virtio driver must tolerate.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace coalesce {

class UsedIndexWatch final {
 public:
  static constexpr size_t kMaxQueues = 8;

  // Watches queue `q`'s used index at `used_idx` (the `idx` field of its used ring, in this process's mapping
  // of guest memory, which outlives the watch). Its current value counts as claimed. Under the owner's lock.
  void Watch(uint16_t q, const uint16_t* used_idx);
  // Watches nothing (the queues stopped). Under the owner's lock.
  void Clear();
  // Lock-free, any thread: whether some watched index differs from the last one claimed.
  [[nodiscard]] bool AnyNew() const;
  // Under the owner's lock: claims every watched index; true if any had moved since its last claim.
  bool Claim();

 private:
  static uint16_t Load(const uint16_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

  std::array<std::atomic<const uint16_t*>, kMaxQueues> idx_{};
  std::array<std::atomic<uint16_t>, kMaxQueues> claimed_{};
};

}  // namespace coalesce
