#include "dsm/dsm_stats.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace coalesce::dsm {

const char* FaultKindName(FaultKind k) {
  switch (k) {
    case FaultKind::kReadMiss: return "read_miss";
    case FaultKind::kWriteMiss: return "write_miss";
    case FaultKind::kUpgrade: return "upgrade";
    case FaultKind::kLocal: return "local";
  }
  return "?";
}

DsmStats::DsmStats(uint64_t num_pages)
    : page_faults_(new std::atomic<uint32_t>[num_pages]()), num_pages_(num_pages) {}

void DsmStats::CountPageFault(uint64_t page) {
  if (page < num_pages_) page_faults_[page].fetch_add(1, std::memory_order_relaxed);
}

std::vector<HotPage> DsmStats::HotPages(size_t n) const {
  // A bounded min-heap over one pass: O(pages log n), fine for an on-demand dump.
  std::vector<HotPage> heap;
  auto cmp = [](const HotPage& a, const HotPage& b) { return a.faults > b.faults; };
  for (uint64_t p = 0; p < num_pages_ && n > 0; ++p) {
    uint64_t c = page_faults_[p].load(std::memory_order_relaxed);
    if (c == 0) continue;
    if (heap.size() < n) {
      heap.push_back({p, c});
      std::push_heap(heap.begin(), heap.end(), cmp);
    } else if (c > heap.front().faults) {
      std::pop_heap(heap.begin(), heap.end(), cmp);
      heap.back() = {p, c};
      std::push_heap(heap.begin(), heap.end(), cmp);
    }
  }
  std::sort(heap.begin(), heap.end(), [](const HotPage& a, const HotPage& b) {
    return a.faults != b.faults ? a.faults > b.faults : a.page < b.page;
  });
  return heap;
}

std::string DsmStats::Format(size_t hot_n) const {
  auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  std::string out = absl::StrFormat(
      "  pages sent %u received %u | invalidations sent %u received %u | ownership given %u | queued requests %u\n"
      "  messages sent %u received %u | bytes sent %u received %u | bulk messages %u | frames rejected %u | "
      "home-only refusals %u\n"
      "  pages read ahead %u | zero pages sent as a flag %u | spilled %u | own copies dropped %u | taken in %u\n",
      ld(pages_sent), ld(pages_received), ld(invalidations_sent), ld(invalidations_received),
      ld(ownership_transfers), ld(requests_queued), ld(messages_sent), ld(messages_received), ld(bytes_sent),
      ld(bytes_received), ld(bulk_messages_sent), ld(frames_rejected), ld(home_only_refusals),
      ld(pages_read_ahead), ld(zero_pages_sent), ld(pages_spilled), ld(copies_dropped), ld(pages_taken_in));
  for (int k = 0; k < kFaultKinds; ++k) {
    absl::StrAppendFormat(&out, "  faults %-10s %8u  latency %s\n", FaultKindName(static_cast<FaultKind>(k)),
                          ld(faults[k]), fault_latency[k].Summary());
  }
  auto hot = HotPages(hot_n);
  if (!hot.empty()) {
    absl::StrAppendFormat(&out, "  hottest pages:");
    for (const auto& h : hot) absl::StrAppendFormat(&out, " %#x(%u)", h.page * 4096, h.faults);
    out += "\n";
  }
  return out;
}

}  // namespace coalesce::dsm
