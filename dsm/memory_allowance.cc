#include "dsm/memory_allowance.h"

#include <algorithm>

#include "hypervisor/base/status_macros.h"

namespace coalesce::dsm {

void MemoryAllowance::SetTarget(NodeId node, uint64_t capacity) {
  RemoveTarget(node);
  targets_.emplace_back(node, capacity);
}

void MemoryAllowance::RemoveTarget(NodeId node) {
  std::erase_if(targets_, [node](const auto& t) { return t.first == node; });
}

uint64_t MemoryAllowance::capacity() const {
  uint64_t sum = 0;
  for (const auto& t : targets_) sum += t.second;
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
  // Room on each memory node: its capacity less what it owns already (the engine keeps the counts).
  std::vector<std::pair<NodeId, uint64_t>> room;
  const std::vector<uint64_t> owned = engine->OwnedPagesPerNode();
  for (const auto& [node, cap] : targets_) room.emplace_back(node, cap > owned[node] ? cap - owned[node] : 0);
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
    auto best = std::max_element(room.begin(), room.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    if (best == room.end() || best->second == 0) {
      round.full = true;
      skipped.push_back(*page);
      break;
    }
    RETURN_IF_ERROR(engine->Spill(*page, best->first, out));
    --best->second;
    ++round.spilled;
  }
  for (uint64_t page : skipped) resident->Requeue(page);
  round.more = resident->count() > goal && !round.full && (round.spilled + round.dropped) > 0;
  if (!round.more) draining_ = resident->count() > goal;
  return round;
}

}  // namespace coalesce::dsm
