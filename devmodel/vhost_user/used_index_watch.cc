#include "devmodel/vhost_user/used_index_watch.h"

namespace coalesce {

void UsedIndexWatch::Watch(uint16_t q, const uint16_t* used_idx) {
  if (q >= kMaxQueues) return;
  claimed_[q].store(used_idx != nullptr ? Load(used_idx) : 0, std::memory_order_relaxed);
  idx_[q].store(used_idx, std::memory_order_release);
}

void UsedIndexWatch::Clear() {
  for (auto& p : idx_) p.store(nullptr, std::memory_order_release);
}

bool UsedIndexWatch::AnyNew() const {
  for (size_t q = 0; q < kMaxQueues; ++q) {
    const uint16_t* p = idx_[q].load(std::memory_order_acquire);
    if (p != nullptr && Load(p) != claimed_[q].load(std::memory_order_relaxed)) return true;
  }
  return false;
}

bool UsedIndexWatch::Claim() {
  bool moved = false;
  for (size_t q = 0; q < kMaxQueues; ++q) {
    const uint16_t* p = idx_[q].load(std::memory_order_acquire);
    if (p == nullptr) continue;
    const uint16_t now = Load(p);
    if (now != claimed_[q].load(std::memory_order_relaxed)) {
      claimed_[q].store(now, std::memory_order_relaxed);
      moved = true;
    }
  }
  return moved;
}

}  // namespace coalesce
