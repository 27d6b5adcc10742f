// Which pages are present in this node's memory, in the order they arrived: a PageMemory that passes every call
// through to the real one and watches Install and Drop. The home node keeps its guest RAM within an allowance by
// spilling the oldest of these to memory nodes (dsm/memory_allowance.h); the order is first-in first-out with a
// second chance for pages that were busy when their turn came.
//
// Not thread-safe: used under the engine's lock, like the engine itself.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "dsm/page_memory.h"

namespace coalesce::dsm {

class ResidentPages final : public PageMemory {
 public:
  // `inner` must outlive this object.
  ResidentPages(PageMemory* inner, uint64_t num_pages);

  absl::Status Install(uint64_t page, const uint8_t* data, bool writable) override;
  absl::Status MakeWritable(uint64_t page) override { return inner_->MakeWritable(page); }
  absl::Status WriteProtect(uint64_t page) override { return inner_->WriteProtect(page); }
  absl::Status ReadPage(uint64_t page, uint8_t* out) override { return inner_->ReadPage(page, out); }
  absl::Status Drop(uint64_t page) override;
  absl::Status Wake(uint64_t page) override { return inner_->Wake(page); }

  // A page made present behind the engine's back (loaded before the node started): counted like an install.
  void NotePresent(uint64_t page);
  // The oldest present page, taken off the queue; nullopt when none is left. A page the caller cannot move now
  // goes back with Requeue (to the end: its second chance).
  std::optional<uint64_t> TakeOldest();
  void Requeue(uint64_t page);

  [[nodiscard]] uint64_t count() const { return count_; }
  [[nodiscard]] uint64_t peak() const { return peak_; }
  [[nodiscard]] bool present(uint64_t page) const { return page < present_.size() && present_[page] != 0; }

 private:
  void Add(uint64_t page);
  void Compact();

  PageMemory* inner_;
  std::vector<uint8_t> present_;
  // Arrival order with lazy removal: a dropped page's entry is skipped when it comes up, and a page installed
  // again is queued again (queued_ keeps one live entry per page).
  std::deque<uint64_t> order_;
  std::vector<uint8_t> queued_;
  uint64_t count_ = 0;
  uint64_t peak_ = 0;
};

}  // namespace coalesce::dsm
