#include "devmodel/virtio/register_mirror.h"

namespace coalesce::virtio {

RegisterMirror::RegisterMirror() : page_(std::make_unique<Page>()) {
  // Every word written once: the page is the process's own from the start (no shared zero page under a memslot).
  for (auto& w : page_->words) w.store(0, std::memory_order_relaxed);
}

void RegisterMirror::Store32(uint64_t offset, uint32_t value) {
  if (offset % 4 != 0 || offset >= kSize) return;
  page_->words[offset / 4].store(value, std::memory_order_release);
}

void RegisterMirror::StoreBytes(uint64_t offset, std::span<const uint8_t> bytes) {
  for (size_t i = 0; i < bytes.size(); i += 4) {
    uint32_t word = 0;
    for (size_t b = 0; b < 4 && i + b < bytes.size(); ++b) word |= uint32_t{bytes[i + b]} << (8 * b);
    Store32(offset + i, word);
  }
}

uint32_t RegisterMirror::Load32(uint64_t offset) const {
  if (offset % 4 != 0 || offset >= kSize) return 0;
  return page_->words[offset / 4].load(std::memory_order_acquire);
}

}  // namespace coalesce::virtio
