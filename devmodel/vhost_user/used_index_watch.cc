#include "devmodel/vhost_user/used_index_watch.h"

namespace coalesce {

void UsedIndexWatch::Watch(uint16_t q, const Ring& ring) {
  if (q >= kMaxQueues) return;
  claimed_[q].store(0, std::memory_order_relaxed);
  flags_[q].store(ring.avail_flags, std::memory_order_relaxed);
  event_[q].store(ring.used_event, std::memory_order_relaxed);
  idx_[q].store(ring.used_idx, std::memory_order_release);
}

void UsedIndexWatch::Clear() {
  for (auto& p : idx_) p.store(nullptr, std::memory_order_release);
}

bool UsedIndexWatch::Wanted(size_t q, uint16_t now) const {
  const uint16_t old = claimed_[q].load(std::memory_order_relaxed);
  if (now == old) return false;
  if (const uint16_t* event = event_[q].load(std::memory_order_relaxed)) {
    // vring_need_event: the driver wants an interrupt once the index passes used_event.
    return static_cast<uint16_t>(now - Load(event) - 1) < static_cast<uint16_t>(now - old);
  }
  const uint16_t* flags = flags_[q].load(std::memory_order_relaxed);
  return flags == nullptr || (Load(flags) & 1) == 0;  // VRING_AVAIL_F_NO_INTERRUPT
}

bool UsedIndexWatch::AnyWanted() const {
  for (size_t q = 0; q < kMaxQueues; ++q) {
    const uint16_t* p = idx_[q].load(std::memory_order_acquire);
    if (p != nullptr && Wanted(q, Load(p))) return true;
  }
  return false;
}

bool UsedIndexWatch::ClaimWanted() { return ClaimMoves(/*wanted_only=*/true); }

bool UsedIndexWatch::Claim() { return ClaimMoves(/*wanted_only=*/false); }

bool UsedIndexWatch::ClaimMoves(bool wanted_only) {
  bool claimed = false;
  for (size_t q = 0; q < kMaxQueues; ++q) {
    const uint16_t* p = idx_[q].load(std::memory_order_acquire);
    if (p == nullptr) continue;
    const uint16_t now = Load(p);
    if (wanted_only ? Wanted(q, now) : now != claimed_[q].load(std::memory_order_relaxed)) {
      claimed_[q].store(now, std::memory_order_relaxed);
      claimed = true;
    }
  }
  return claimed;
}

}  // namespace coalesce
