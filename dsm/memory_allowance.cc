#include "dsm/memory_allowance.h"

#include <algorithm>

#include "hypervisor/base/status_macros.h"

namespace coalesce::dsm {

void MemoryAllowance::SetTarget(NodeId node, uint64_t capacity, std::pair<uint64_t, uint64_t> range) {
  RemoveTarget(node);
  targets_.push_back(Target{node, capacity, range});
}

void MemoryAllowance::RemoveTarget(NodeId node) {
  std::erase_if(targets_, [node](const Target& t) { return t.node == node; });
}

uint64_t MemoryAllowance::capacity() const {
  uint64_t sum = 0;
  for (const Target& t : targets_) sum += t.capacity;
  return sum;
}

absl::StatusOr<MemoryAllowance::Round> MemoryAllowance::Step(ProtocolEngine* engine, ResidentPages* resident,
                                             const std::vector<std::pair<uint64_t, uint64_t>>& keep, size_t batch,
                                             std::vector<Message>* out) {
  Round round;
  if (allowance_ == 0) return round;
  if (resident->count() > allowance_) draining_ = true;
  const uint64_t goal = allowance_ - std::min(margin(), allowance_);
  if (!draining_ || resident->count() <= goal) {
    draining_ = false;
    return round;
  }
  // Room on each memory node (index as in targets_): its capacity less what it owns already (the engine keeps
  // the counts).
  std::vector<uint64_t> room;
  const std::vector<uint64_t> owned = engine->OwnedPagesPerNode();
  for (const Target& t : targets_) room.push_back(t.capacity > owned[t.node] ? t.capacity - owned[t.node] : 0);
  // Where a page goes: the node whose range holds it while that one has room, else the one with the most room.
  auto destination = [&](uint64_t page) -> size_t {
    for (size_t i = 0; i < targets_.size(); ++i) {
      if (page >= targets_[i].range.first && page < targets_[i].range.second && room[i] != 0) return i;
    }
    return std::max_element(room.begin(), room.end()) - room.begin();
  };
  auto kept = [&keep](uint64_t page) {
    return std::any_of(keep.begin(), keep.end(), [page](const auto& s) { return page >= s.first && page < s.second; });
  };
  std::vector<uint64_t> skipped;  // busy or kept: back to the queue after this round (their second chance)
  size_t looked = 0;
  while (resident->count() > goal && round.spilled + round.dropped < batch && looked < 4 * batch) {
    const std::optional<uint64_t> page = resident->TakeOldest();
    if (!page) break;
    ++looked;
    if (kept(*page)) {
      skipped.push_back(*page);
      continue;
    }
    if (engine->CanDropCopy(*page)) {
      RETURN_IF_ERROR(engine->DropCopy(*page));
      ++round.dropped;
      continue;
    }
    if (!engine->CanSpill(*page)) {
      skipped.push_back(*page);
      continue;
    }
    const size_t to = destination(*page);
    if (to == room.size() || room[to] == 0) {
      round.full = true;
      skipped.push_back(*page);
      break;
    }
    RETURN_IF_ERROR(engine->Spill(*page, targets_[to].node, out));
    --room[to];
    ++round.spilled;
  }
  for (uint64_t page : skipped) resident->Requeue(page);
  round.more = resident->count() > goal && !round.full && (round.spilled + round.dropped) > 0;
  if (!round.more) draining_ = resident->count() > goal;
  return round;
}

}  // namespace coalesce::dsm
