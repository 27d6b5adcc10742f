// Per-node DSM counters, fault latency histograms and per-page fault counts (for the hot-page list).
// Everything is atomic: the service threads update it, any thread may read it while the node runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dsm/latency_histogram.h"

namespace coalesce::dsm {

// How a fault was resolved; indexes the per-kind counters and histograms.
enum class FaultKind : int {
  kReadMiss = 0,   // read of an Invalid page: fetched a Shared copy
  kWriteMiss = 1,  // write of an Invalid page: fetched the page and ownership
  kUpgrade = 2,    // write of a Shared page: Shared -> Modified
  kLocal = 3,      // resolved without the network (a page this node holds but never touched, or a stale event)
};
inline constexpr int kFaultKinds = 4;
const char* FaultKindName(FaultKind k);

struct HotPage {
  uint64_t page;
  uint64_t faults;
};

class DsmStats final {
 public:
  explicit DsmStats(uint64_t num_pages);

  std::atomic<uint64_t> faults[kFaultKinds] = {};
  LatencyHistogram fault_latency[kFaultKinds];
  std::atomic<uint64_t> pages_sent{0};
  std::atomic<uint64_t> pages_received{0};
  std::atomic<uint64_t> invalidations_sent{0};      // as manager
  std::atomic<uint64_t> invalidations_received{0};  // as sharer: copies dropped
  std::atomic<uint64_t> ownership_transfers{0};     // pages this node gave away
  std::atomic<uint64_t> pages_read_ahead{0};        // as manager: neighbours pushed to a sequential reader
  std::atomic<uint64_t> pages_spilled{0};          // as manager: pages handed to a memory node (allowance)
  std::atomic<uint64_t> copies_dropped{0};         // as manager: own Shared copies dropped (allowance)
  std::atomic<uint64_t> pages_taken_in{0};         // as memory node: pages spilled to this node
  std::atomic<uint64_t> spill_rounds{0};           // home: the spill thread's looks at the allowance
  std::atomic<uint64_t> zero_pages_sent{0};         // page transfers sent as a flag, not 4 KiB of zeros
  std::atomic<uint64_t> messages_sent{0};
  std::atomic<uint64_t> messages_received{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> requests_queued{0};  // as manager: a request waited behind another on the same page
  std::atomic<uint64_t> bulk_messages_sent{0};
  // Messages refused as malformed, forged or replayed (each closed its connection).
  std::atomic<uint64_t> frames_rejected{0};
  // Page contents of home-only memory this node refused to put on the wire (each a protocol breach: the VM stops).
  std::atomic<uint64_t> home_only_refusals{0};

  void CountPageFault(uint64_t page);
  // The n pages with the most faults on this node, hottest first.
  [[nodiscard]] std::vector<HotPage> HotPages(size_t n) const;
  // Multi-line human-readable dump (counters, histograms, top `hot_n` pages).
  [[nodiscard]] std::string Format(size_t hot_n = 10) const;

 private:
  std::unique_ptr<std::atomic<uint32_t>[]> page_faults_;
  uint64_t num_pages_;
};

}  // namespace coalesce::dsm
