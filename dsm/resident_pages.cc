#include "dsm/resident_pages.h"

#include <algorithm>

namespace coalesce::dsm {

ResidentPages::ResidentPages(PageMemory* inner, uint64_t num_pages)
    : inner_(inner), present_(num_pages, 0), queued_(num_pages, 0) {}

absl::Status ResidentPages::Install(uint64_t page, const uint8_t* data, bool writable) {
  absl::Status s = inner_->Install(page, data, writable);
  // AlreadyExists: present all along (a stale fault event), which is worth knowing too.
  if (s.ok() || absl::IsAlreadyExists(s)) Add(page);
  return s;
}

absl::Status ResidentPages::Drop(uint64_t page) {
  absl::Status s = inner_->Drop(page);
  if (s.ok() && page < present_.size() && present_[page]) {
    present_[page] = 0;
    --count_;
  }
  return s;
}

void ResidentPages::NotePresent(uint64_t page) { Add(page); }

void ResidentPages::Add(uint64_t page) {
  if (page >= present_.size() || present_[page]) return;
  present_[page] = 1;
  peak_ = std::max(peak_, ++count_);
  if (!queued_[page]) {
    queued_[page] = 1;
    order_.push_back(page);
  }
  if (order_.size() > 2 * count_ + 4096) Compact();
}

std::optional<uint64_t> ResidentPages::TakeOldest() {
  while (!order_.empty()) {
    const uint64_t page = order_.front();
    order_.pop_front();
    queued_[page] = 0;
    if (present_[page]) return page;
  }
  return std::nullopt;
}

void ResidentPages::Requeue(uint64_t page) {
  if (page >= present_.size() || !present_[page] || queued_[page]) return;
  queued_[page] = 1;
  order_.push_back(page);
}

// Entries of pages dropped since they were queued pile up while nothing takes from the queue (no allowance set,
// pages moving between nodes): this keeps the queue within twice the present pages.
void ResidentPages::Compact() {
  std::deque<uint64_t> kept;
  for (uint64_t page : order_) {
    if (present_[page]) {
      kept.push_back(page);
    } else {
      queued_[page] = 0;
    }
  }
  order_.swap(kept);
}

}  // namespace coalesce::dsm
