// Spilling to memory nodes (docs/DSM.md, "Spilling to memory nodes"): the home keeps within its memory allowance
// by handing its oldest pages to memory nodes, and every access still sees the last write, under every message
// order the simulator picks.
#include <catch2/catch.hpp>

#include "tests/unit/dsm/protocol_sim.h"

namespace coalesce::dsm {
namespace {

using sim::Op;
using sim::Sim;

void DeliverAll(Sim& s) {
  while (!s.net_.empty()) {
    s.Deliver(s.Deliverable().front());
    s.CheckInvariants();
  }
}

std::vector<Op> Writes(uint64_t first, uint64_t end) {
  std::vector<Op> ops;
  for (uint64_t p = first; p < end; ++p) ops.push_back(Op{p, true});
  return ops;
}

TEST_CASE("the home spills its oldest pages to a memory node and reads them back from it", "[dsm][spill]") {
  Sim s(2, 8);
  s.AddThread(0, Writes(0, 8));
  s.RunRandom(1);
  REQUIRE(s.failure_.empty());
  REQUIRE(s.resident_->count() == 8);
  s.EnableSpilling(4, {{1, 8}});
  s.spilling_ = false;  // this test runs each round itself
  const MemoryAllowance::Round r = s.SpillRound(8);
  CHECK(r.spilled == 4);
  CHECK(s.resident_->count() == 4);
  for (uint64_t p = 0; p < 4; ++p) {
    CHECK(s.engines_[0]->directory(p).owner == 1);  // the oldest four, in the order they arrived
    CHECK(s.engines_[0]->state(p) == PageState::kInvalid);
    CHECK_FALSE(s.mem_[0]->pages_[p].present);
  }
  DeliverAll(s);
  for (uint64_t p = 0; p < 4; ++p) CHECK(s.engines_[1]->state(p) == PageState::kModified);
  CHECK(s.stats_[1]->pages_taken_in.load() == 4);

  // Home reads page 0 back: a forwarded read, the memory node stays owner with a Shared copy.
  s.AddThread(0, {{0, false}});
  s.RunRandom(2);
  REQUIRE(s.failure_.empty());
  CHECK(s.engines_[0]->state(0) == PageState::kShared);
  CHECK(s.engines_[0]->directory(0).owner == 1);
  CHECK(s.resident_->count() == 5);

  // Down to one page: the oldest go (4, 5, 6, then 7); then a read of page 1 puts home over again, and the
  // oldest present page is now the Shared copy of page 0: it is dropped, without a message.
  s.allowance_.SetAllowance(1);
  while (s.SpillRound(8).more) {
  }
  DeliverAll(s);
  CHECK(s.resident_->count() == 1);
  CHECK(s.engines_[0]->state(0) == PageState::kShared);
  s.AddThread(0, {{1, false}});
  s.RunRandom(5);
  REQUIRE(s.failure_.empty());
  const size_t sent_before = s.net_.size();
  s.SpillRound(8);
  CHECK(s.net_.size() == sent_before);
  CHECK(s.resident_->count() == 1);
  CHECK(s.stats_[0]->copies_dropped.load() == 1);
  CHECK(s.engines_[0]->state(0) == PageState::kInvalid);
  CHECK(s.engines_[0]->OwnedPagesPerNode()[1] == 8);

  // A write brings a page home Modified and over the allowance again: the oldest goes. Once the memory node is
  // full, nothing moves.
  s.AddThread(0, {{5, true}, {6, true}});
  s.RunRandom(3);
  REQUIRE(s.failure_.empty());
  CHECK(s.resident_->count() == 3);
  CHECK(s.engines_[0]->directory(5).owner == 0);
  const MemoryAllowance::Round again = s.SpillRound(8);
  CHECK(again.dropped == 1);  // page 1's Shared copy, the oldest
  CHECK(again.spilled == 1);  // page 5, into the room its return made
  DeliverAll(s);
  s.AddThread(0, {{7, true}});
  s.RunRandom(4);
  s.allowance_.SetTarget(1, s.engines_[0]->OwnedPagesPerNode()[1]);  // no room left on the memory node
  CHECK(s.SpillRound(8).full);
  CHECK(s.resident_->count() == 2);
  REQUIRE(s.failure_.empty());
}

TEST_CASE("a page in a memory node's range goes to that node while it has room", "[dsm][spill]") {
  // Nodes 1 and 2 lend memory; node 2's range (its guest NUMA domain) is pages 4-7. Node 1 has more room, so
  // only the range sends pages 4-7 to node 2; pages outside any range go to the node with the most room.
  Sim s(3, 8);
  s.AddThread(0, Writes(0, 8));
  s.RunRandom(1);
  REQUIRE(s.failure_.empty());
  s.EnableSpilling(1, {});
  s.allowance_.SetTarget(1, 8);
  s.allowance_.SetTarget(2, 3, {4, 8});  // room for three of its four
  s.spilling_ = false;
  while (s.SpillRound(8).more) {
  }
  DeliverAll(s);
  CHECK(s.resident_->count() <= 1);
  const std::vector<uint64_t> owned = s.engines_[0]->OwnedPagesPerNode();
  CHECK(owned[2] == 3);
  for (uint64_t p = 0; p < 4; ++p) CHECK(s.engines_[0]->directory(p).owner != 2);
  for (uint64_t p = 4; p < 7; ++p) CHECK(s.engines_[0]->directory(p).owner == 2);  // the oldest three of its range
  CHECK(s.engines_[0]->directory(7).owner != 2);  // node 2 full: the most room elsewhere (or home, the last one)
}

TEST_CASE("spilling interleaved with faults everywhere stays sequentially consistent", "[dsm][spill]") {
  for (uint64_t seed = 1; seed <= 150; ++seed) {
    std::mt19937_64 rng(seed);
    Sim s(3, 8);
    // Node 1 lends memory only; node 2 runs threads and is a spill target too (a request of its own may cross
    // a spill of the same page).
    s.EnableSpilling(2, {{1, 6}, {2, 2}});
    s.AddThread(0, sim::RandomOps(rng, 40, 8, 0.5));
    s.AddThread(0, sim::RandomOps(rng, 40, 8, 0.3));
    s.AddThread(2, sim::RandomOps(rng, 40, 8, 0.5));
    s.RunRandom(seed);
    INFO("seed " << seed << ": " << s.failure_);
    REQUIRE(s.failure_.empty());
    REQUIRE(s.quiescent());
    while (s.SpillRound(8).more) DeliverAll(s);
    DeliverAll(s);
    s.CheckInvariants();
    REQUIRE(s.failure_.empty());
    CHECK(s.resident_->count() <= 2);
    // The engine's running count of pages per owner agrees with its directory.
    std::vector<uint64_t> recount(kMaxNodes, 0);
    for (uint64_t p = 0; p < 8; ++p) ++recount[s.engines_[0]->directory(p).owner];
    CHECK(s.engines_[0]->OwnedPagesPerNode() == recount);
  }
}

TEST_CASE("a memory node that begins to leave hands spilled pages straight back", "[dsm][spill]") {
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    std::mt19937_64 rng(seed);
    Sim s(2, 6);
    s.AddThread(0, Writes(0, 6));
    s.RunRandom(seed);
    REQUIRE(s.failure_.empty());
    s.EnableSpilling(2, {{1, 6}});
    s.SpillRound(3);  // in flight while node 1 begins to leave
    std::vector<Message> out;
    REQUIRE(s.engines_[1]->BeginLeave(&out).ok());
    s.Enqueue(std::move(out));
    s.allowance_.RemoveTarget(1);
    s.AddThread(0, sim::RandomOps(rng, 20, 6, 0.5));
    s.RunRandom(seed + 100);
    INFO("seed " << seed << ": " << s.failure_);
    REQUIRE(s.failure_.empty());
    REQUIRE(s.engines_[1]->leave_complete());
    for (uint64_t p = 0; p < 6; ++p) {
      CHECK(s.engines_[1]->state(p) == PageState::kInvalid);
      CHECK(s.engines_[0]->directory(p).owner == 0);
    }
  }
}

TEST_CASE("a memory node holding more pages than its leave window hands every one back", "[dsm][spill]") {
  constexpr uint64_t kPages = 600;  // over two windows of 256
  Sim s(2, kPages);
  s.AddThread(0, Writes(0, kPages));
  s.RunRandom(7, 2000000);
  REQUIRE(s.failure_.empty());
  s.EnableSpilling(40, {{1, kPages}});
  s.spilling_ = false;
  while (s.SpillRound(64).more) DeliverAll(s);
  DeliverAll(s);
  REQUIRE(s.engines_[0]->OwnedPagesPerNode()[1] >= kPages - 40);
  std::vector<Message> out;
  REQUIRE(s.engines_[1]->BeginLeave(&out).ok());
  CHECK(out.size() == 256);  // the window, not every page at once
  s.Enqueue(std::move(out));
  s.allowance_.RemoveTarget(1);
  std::mt19937_64 rng(7);
  s.AddThread(0, sim::RandomOps(rng, 50, kPages, 0.5));  // the home keeps using them meanwhile
  s.RunRandom(8, 2000000);
  INFO(s.failure_);
  REQUIRE(s.failure_.empty());
  CHECK(s.engines_[1]->leave_complete());
  CHECK(s.engines_[0]->OwnedPagesPerNode()[0] == kPages);
}

TEST_CASE("a spill that breaks the rules is a protocol violation", "[dsm][spill]") {
  Sim s(3, 4);
  std::vector<Message> out;
  Message m;
  m.type = MsgType::kPageData;
  m.src = 0;
  m.dst = 1;
  m.page = 1;
  m.flags = kFlagSpill | kFlagGrantModified | kFlagOpDone | kFlagZeroPage;
  SECTION("from a node that does not manage the page") {
    m.src = 2;
    CHECK(absl::IsDataLoss(s.engines_[1]->OnMessage(m, absl::Now(), &out)));
  }
  SECTION("without a Modified grant") {
    m.flags &= ~kFlagGrantModified;
    CHECK(absl::IsDataLoss(s.engines_[1]->OnMessage(m, absl::Now(), &out)));
  }
  SECTION("with a request id") {
    m.seq = 9;
    CHECK(absl::IsDataLoss(s.engines_[1]->OnMessage(m, absl::Now(), &out)));
  }
  SECTION("of a page the node holds") {
    REQUIRE(s.engines_[1]->OnMessage(m, absl::Now(), &out).ok());
    CHECK(absl::IsDataLoss(s.engines_[1]->OnMessage(m, absl::Now(), &out)));
  }
  SECTION("the home refuses to spill what it does not own alone, or to itself") {
    CHECK(absl::IsInvalidArgument(s.engines_[0]->Spill(1, 0, &out)));
    s.AddThread(1, {{1, false}});
    s.RunRandom(1);
    CHECK_FALSE(s.engines_[0]->CanSpill(1));  // node 1 holds a Shared copy
    CHECK(absl::IsFailedPrecondition(s.engines_[0]->Spill(1, 2, &out)));
  }
}

}  // namespace
}  // namespace coalesce::dsm
