// The home's memory allowance: guest RAM beyond it lives on memory nodes (edges that lend RAM, no CPUs). When the
// pages present at home exceed the allowance, the oldest go: a Shared copy of a page another node owns is simply
// dropped, a page home owns alone is spilled to the memory node whose range holds it (the boot RAM a guest NUMA
// domain of that node names) while it has room, else to the memory node with the most room (ProtocolEngine::Spill).
// A spilled page comes back on its next access like any remote page; the allowance is then exceeded again and
// older pages leave. docs/DSM.md, "Spilling to memory nodes".
//
// Pure policy, run under the engine's lock by the node's spill thread; the unit tests drive it on the simulator.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "dsm/protocol_engine.h"
#include "dsm/resident_pages.h"

namespace coalesce::dsm {

class MemoryAllowance final {
 public:
  // 0: no allowance (nothing is spilled).
  void SetAllowance(uint64_t pages) { allowance_ = pages; }
  // A memory node that takes up to `capacity` pages (counted as the pages it owns), first those of its own range
  // of pages [range.first, range.second) (none when empty). Replaces an earlier entry.
  void SetTarget(NodeId node, uint64_t capacity, std::pair<uint64_t, uint64_t> range = {0, 0});
  void RemoveTarget(NodeId node);
  [[nodiscard]] uint64_t allowance() const { return allowance_; }
  // Over the allowance and not yet back down to the margin below it (Step's own state).
  [[nodiscard]] bool draining() const { return draining_; }
  [[nodiscard]] uint64_t capacity() const;
  // Far over the allowance (an eighth over it): the fault thread spills a batch itself before it serves a new
  // fault, so a guest that touches memory faster than the spill thread moves it is held back, not let run away.
  [[nodiscard]] bool FarOver(const ResidentPages& resident) const {
    return allowance_ != 0 && !targets_.empty() && resident.count() > allowance_ + allowance_ / 8;
  }

  struct Round {
    uint64_t spilled = 0;
    uint64_t dropped = 0;
    bool more = false;  // still over the allowance: run again at once
    bool full = false;  // over, and no memory node has room
  };
  // Moves up to `batch` pages out while home is over the allowance (down to a margin below it, so that one fault
  // over it does not move one page at a time). Pages in `keep` (home-only memory) never leave.
  // An error is the engine's (local memory failed): the node cannot stay coherent.
  absl::StatusOr<Round> Step(ProtocolEngine* engine, ResidentPages* resident,
                             const std::vector<std::pair<uint64_t, uint64_t>>& keep, size_t batch,
                             std::vector<Message>* out);

 private:
  [[nodiscard]] uint64_t margin() const { return std::min<uint64_t>(allowance_ / 32, 1024); }

  struct Target {
    NodeId node;
    uint64_t capacity;
    std::pair<uint64_t, uint64_t> range;  // pages [first, second) it takes first
  };
  uint64_t allowance_ = 0;
  std::vector<Target> targets_;
  bool draining_ = false;
};

}  // namespace coalesce::dsm
