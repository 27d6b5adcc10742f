// The coherence protocol under every message order: directed tests for each race named in docs/DSM.md, then
// seeded random runs checked against a sequentially consistent reference after every step.
#include <catch2/catch.hpp>

#include "tests/unit/dsm/protocol_sim.h"

namespace coalesce::dsm {
namespace {

using sim::Op;
using sim::Sim;

// Delivers the first deliverable (oldest of its node pair) message matching type (and destination, if given).
bool DeliverFirst(Sim& s, MsgType type, int dst = -1) {
  for (size_t i : s.Deliverable()) {
    if (s.net_[i].type == type && (dst < 0 || s.net_[i].dst == dst)) {
      s.Deliver(i);
      s.CheckInvariants();
      return true;
    }
  }
  return false;
}

TEST_CASE("read fault fetches from the owner, which downgrades to Shared", "[dsm][protocol]") {
  Sim s(3, 4);
  s.AddThread(0, {{1, true}});  // home writes page 1 (resolved locally: never-touched page)
  REQUIRE(s.StepThread(0));
  REQUIRE(s.StepThread(0));  // woken by the local install, completes the write
  REQUIRE(s.engines_[0]->state(1) == PageState::kModified);
  s.AddThread(1, {{1, false}});
  s.StepThread(1);  // fault -> READ_REQ
  // The home is manager and owner: it answers at once, downgrading, and the operation is over (no READ_DONE).
  REQUIRE(DeliverFirst(s, MsgType::kReadReq));
  REQUIRE(s.engines_[0]->state(1) == PageState::kShared);
  REQUIRE_FALSE(s.engines_[0]->directory(1).busy);
  REQUIRE(s.net_.size() == 1);
  REQUIRE((s.net_[0].flags & kFlagOpDone) != 0);
  REQUIRE(DeliverFirst(s, MsgType::kPageData));
  REQUIRE(s.engines_[1]->state(1) == PageState::kShared);
  REQUIRE(s.net_.empty());
  REQUIRE(s.StepThread(1));
  // Node 1 takes the page Modified; then node 2 reads it from node 1, not from the home: a forwarded read.
  s.AddThread(1, {{1, true}});
  s.AddThread(2, {{1, false}});
  s.RunRandom(11);
  REQUIRE(s.failure_.empty());
  REQUIRE(s.stats_[1]->pages_sent.load() == 1);  // node 1, the owner, served node 2
  REQUIRE(s.engines_[1]->state(1) == PageState::kShared);
  REQUIRE(s.engines_[2]->state(1) == PageState::kShared);
  auto d = s.engines_[0]->directory(1);
  REQUIRE(d.owner == 1);
  REQUIRE(d.copyset == 0b110);
  REQUIRE_FALSE(d.busy);
  REQUIRE(s.quiescent());
}

TEST_CASE("write fault invalidates every sharer and waits for the acknowledgements", "[dsm][protocol]") {
  Sim s(4, 2);
  for (int n = 1; n < 4; ++n) s.AddThread(n, {{0, false}});
  s.RunRandom(1);
  REQUIRE(s.failure_.empty());
  REQUIRE(s.engines_[0]->directory(0).copyset == 0b1111);
  s.AddThread(3, {{0, true}});
  s.StepThread(3);  // upgrade request
  REQUIRE(DeliverFirst(s, MsgType::kWriteReq));
  // Invalidations to nodes 1 and 2 (node 0 is the owner, node 3 the requester): no transfer before both acks.
  REQUIRE(DeliverFirst(s, MsgType::kInvalidate, 1));
  REQUIRE(DeliverFirst(s, MsgType::kInvAck));
  REQUIRE(s.engines_[0]->state(0) == PageState::kShared);
  REQUIRE_FALSE(DeliverFirst(s, MsgType::kPageData));
  REQUIRE(DeliverFirst(s, MsgType::kInvalidate, 2));
  REQUIRE(DeliverFirst(s, MsgType::kInvAck));
  // The home owns the page: it drops its copy and grants Modified without data (node 3 has it).
  REQUIRE(s.engines_[0]->state(0) == PageState::kInvalid);
  REQUIRE(DeliverFirst(s, MsgType::kPageData));
  REQUIRE(s.engines_[3]->state(0) == PageState::kModified);
  REQUIRE(s.net_.empty());
  s.RunRandom(2);
  REQUIRE(s.failure_.empty());
  REQUIRE(s.engines_[0]->directory(0).owner == 3);
  REQUIRE(s.engines_[0]->directory(0).copyset == 0b1000);
  REQUIRE(s.stats_[3]->pages_received.load() == 1);  // the read; the upgrade moved no data
  // Now with an owner that is not the manager: node 1 writes, node 3 (owner) is forwarded the request.
  s.AddThread(1, {{0, true}});
  s.StepThread(4);
  REQUIRE(DeliverFirst(s, MsgType::kWriteReq));
  REQUIRE(DeliverFirst(s, MsgType::kFwdWrite, 3));
  REQUIRE(s.engines_[3]->state(0) == PageState::kInvalid);
  REQUIRE(DeliverFirst(s, MsgType::kPageData, 1));
  REQUIRE(DeliverFirst(s, MsgType::kWriteDone, 0));
  REQUIRE(s.engines_[0]->directory(0).owner == 1);
  s.RunRandom(3);
  REQUIRE(s.failure_.empty());
  REQUIRE(s.quiescent());
}

TEST_CASE("concurrent faults on one page are queued at the manager, none lost", "[dsm][protocol]") {
  Sim s(4, 1);
  for (int n = 0; n < 4; ++n) s.AddThread(n, {{0, true}, {0, false}, {0, true}});
  for (size_t t = 0; t < 4; ++t) s.StepThread(t);  // four faults in flight at once
  s.RunRandom(7);
  REQUIRE(s.failure_.empty());
  REQUIRE(s.quiescent());
  REQUIRE(s.stats_[0]->requests_queued.load() > 0);
}

TEST_CASE("a fault crossing an invalidation: upgrade request overtaken by another writer", "[dsm][protocol]") {
  Sim s(3, 1);
  s.AddThread(1, {{0, false}});
  s.RunRandom(3);
  REQUIRE(s.engines_[1]->state(0) == PageState::kShared);
  s.AddThread(2, {{0, true}});
  s.AddThread(1, {{0, true}});
  s.StepThread(1);  // node 2: write miss -> WRITE_REQ
  s.StepThread(2);  // node 1: upgrade -> WRITE_REQ
  // The manager takes node 2's request first; node 1's waits.
  REQUIRE(s.net_[0].src == 2);
  s.Deliver(0);
  REQUIRE(DeliverFirst(s, MsgType::kWriteReq));  // node 1's, queued
  REQUIRE(s.engines_[0]->directory(0).queued == 1);
  // The invalidation reaches node 1 while its own upgrade request is pending.
  REQUIRE(s.engines_[1]->request_pending(0));
  REQUIRE(DeliverFirst(s, MsgType::kInvalidate, 1));
  REQUIRE(s.engines_[1]->state(0) == PageState::kInvalid);
  s.RunRandom(4);
  REQUIRE(s.failure_.empty());
  // Node 1's upgrade was served with data (it no longer had a copy), and its write came after node 2's.
  REQUIRE(s.stats_[1]->pages_received.load() >= 2);
  REQUIRE(s.threads_[1].done());
  REQUIRE(s.threads_[2].done());
  REQUIRE(s.quiescent());
}

TEST_CASE("a node faulting on the page it is giving away", "[dsm][protocol]") {
  Sim s(3, 1);
  s.AddThread(1, {{0, true}});
  s.RunRandom(5);
  REQUIRE(s.engines_[1]->state(0) == PageState::kModified);
  s.AddThread(2, {{0, true}});
  s.StepThread(1);
  REQUIRE(DeliverFirst(s, MsgType::kWriteReq));
  REQUIRE(DeliverFirst(s, MsgType::kFwdWrite, 1));  // node 1 gives the page away...
  REQUIRE(s.engines_[1]->state(0) == PageState::kInvalid);
  s.AddThread(1, {{0, false}});
  s.StepThread(2);  // ...and immediately faults on it again
  REQUIRE(DeliverFirst(s, MsgType::kReadReq));
  REQUIRE(s.engines_[0]->directory(0).queued == 1);  // behind the transfer in progress
  s.RunRandom(6);
  REQUIRE(s.failure_.empty());  // node 1's read returned node 2's write (checked against the reference)
  REQUIRE(s.threads_[2].done());
  REQUIRE(s.quiescent());
}

TEST_CASE("owner in Shared upgrades without data while its forward to a reader is in flight", "[dsm][protocol]") {
  Sim s(2, 1);
  s.AddThread(1, {{0, false}});
  s.AddThread(0, {{0, true}});
  s.StepThread(0);  // node 1 read miss
  s.StepThread(1);  // home: never-touched page, resolved locally
  s.RunRandom(8);
  REQUIRE(s.failure_.empty());
  REQUIRE(s.quiescent());
}

TEST_CASE("random runs are sequentially consistent (home placement)", "[dsm][protocol]") {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    std::mt19937_64 rng(seed);
    const int nodes = 2 + static_cast<int>(seed % 4);
    Sim s(nodes, 3);
    for (int n = 0; n < nodes; ++n) {
      s.AddThread(n, sim::RandomOps(rng, 12, 3, 0.4));
      s.AddThread(n, sim::RandomOps(rng, 12, 3, 0.4));
    }
    s.RunRandom(seed);
    INFO("seed " << seed << ": " << s.failure_);
    REQUIRE(s.failure_.empty());
    REQUIRE(s.quiescent());
  }
}

TEST_CASE("random runs are sequentially consistent (hashed directory)", "[dsm][protocol]") {
  for (uint64_t seed = 1; seed <= 150; ++seed) {
    std::mt19937_64 rng(seed);
    Sim s(3, 5, MakeHashPlacement({0, 1, 2}));
    for (int n = 0; n < 3; ++n) s.AddThread(n, sim::RandomOps(rng, 15, 5, 0.5));
    s.RunRandom(seed * 31);
    INFO("seed " << seed << ": " << s.failure_);
    REQUIRE(s.failure_.empty());
    REQUIRE(s.quiescent());
  }
}

TEST_CASE("sequential readers get pages read ahead; runs with them stay sequentially consistent", "[dsm][protocol]") {
  uint64_t read_ahead = 0, zero_pages = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    constexpr uint64_t kPages = 24;
    Sim s(3, kPages);
    std::vector<sim::Op> sweep;
    for (uint64_t p = 0; p < kPages; ++p) sweep.push_back({p, false});
    s.AddThread(1, sweep);                                  // a sequential reader on an edge
    s.AddThread(2, sim::RandomOps(rng, 20, kPages, 0.6));   // writers and readers across the same pages
    s.AddThread(0, sim::RandomOps(rng, 20, kPages, 0.6));
    if (seed % 2 == 0) s.AddThread(2, sweep);               // a second sequential reader
    s.RunRandom(seed);
    INFO("seed " << seed << ": " << s.failure_);
    REQUIRE(s.failure_.empty());
    REQUIRE(s.quiescent());
    read_ahead += s.stats_[0]->pages_read_ahead.load();
    zero_pages += s.stats_[0]->zero_pages_sent.load();
  }
  // The runs really exercised both: pushed pages, and untouched (zero) pages sent as a flag.
  REQUIRE(read_ahead > 200);
  REQUIRE(zero_pages > 200);
}

TEST_CASE("read-ahead: an uncontended sweep faults once per window, and only the window's first page", "[dsm][protocol]") {
  constexpr uint64_t kPages = 64;
  Sim s(2, kPages);
  std::vector<sim::Op> sweep;
  for (uint64_t p = 0; p < kPages; ++p) sweep.push_back({p, false});
  s.AddThread(1, sweep);
  s.RunRandom(7);
  REQUIRE(s.failure_.empty());
  const uint64_t misses = s.stats_[1]->faults[static_cast<int>(FaultKind::kReadMiss)].load();
  const uint64_t pushed = s.stats_[0]->pages_read_ahead.load();
  INFO("read misses " << misses << ", pages read ahead " << pushed);
  REQUIRE(misses + pushed >= kPages);
  REQUIRE(misses <= kPages / 4);  // windows of 2, 4, 8, 16, 16, ...
  REQUIRE(s.stats_[0]->zero_pages_sent.load() == kPages);  // nobody wrote them: every copy went as a flag
}

TEST_CASE("a node that begins to leave while pages read ahead are in flight hands them back too", "[dsm][protocol]") {
  Sim s(3, 8);
  s.AddThread(2, {{0, false}, {1, false}, {2, false}});
  // Run until node 2's accesses are done but leave whatever is still on the wire.
  for (int i = 0; i < 10000 && !s.threads_[0].done(); ++i) {
    if (!s.StepThread(0)) {
      const auto d = s.Deliverable();
      REQUIRE_FALSE(d.empty());
      s.Deliver(d.front());
    }
  }
  REQUIRE(s.threads_[0].done());
  // Answers to node 2's own requests must arrive first (DsmNode::Leave waits for them); read-ahead may still fly.
  while (s.engines_[2]->pending_requests() > 0) s.Deliver(s.Deliverable().front());
  std::vector<Message> out;
  REQUIRE(s.engines_[2]->BeginLeave(&out).ok());
  s.Enqueue(std::move(out));
  s.AddThread(0, {{0, true}, {1, true}, {2, true}, {3, true}, {4, true}});
  s.RunRandom(3);
  INFO(s.failure_);
  REQUIRE(s.failure_.empty());
  REQUIRE(s.engines_[2]->leave_complete());
  for (uint64_t p = 0; p < 8; ++p) {
    REQUIRE(s.engines_[2]->state(p) == PageState::kInvalid);
    REQUIRE((s.engines_[0]->directory(p).copyset & 0b100) == 0);
  }
}

TEST_CASE("a leaving node hands its pages back; the others keep every write", "[dsm][protocol]") {
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    std::mt19937_64 rng(seed);
    Sim s(3, 4);
    s.AddThread(2, {{0, true}, {1, true}, {2, false}, {3, true}});
    s.AddThread(1, {{3, false}, {1, false}});
    s.RunRandom(seed);
    REQUIRE(s.failure_.empty());
    std::vector<Message> out;
    REQUIRE(s.engines_[2]->BeginLeave(&out).ok());
    s.Enqueue(std::move(out));
    // While the evictions are in flight other nodes keep accessing those pages.
    s.AddThread(1, sim::RandomOps(rng, 10, 4, 0.5));
    s.AddThread(0, sim::RandomOps(rng, 10, 4, 0.5));
    s.RunRandom(seed + 1000);
    INFO("seed " << seed << ": " << s.failure_);
    REQUIRE(s.failure_.empty());
    REQUIRE(s.engines_[2]->leave_complete());
    for (uint64_t p = 0; p < 4; ++p) {
      REQUIRE(s.engines_[2]->state(p) == PageState::kInvalid);
      REQUIRE((s.engines_[0]->directory(p).copyset & 0b100) == 0);
      REQUIRE(s.engines_[0]->directory(p).owner != 2);
    }
  }
}

TEST_CASE("messages that break the protocol are errors, never crashes", "[dsm][protocol]") {
  Sim s(3, 2);
  std::vector<Message> out;
  auto now = absl::UnixEpoch();
  Message m;
  m.src = 1;
  m.dst = 0;
  m.page = 0;
  for (MsgType t : {MsgType::kInvAck, MsgType::kReadDone, MsgType::kWriteDone, MsgType::kPageData,
                    MsgType::kEvictAck, MsgType::kHello, MsgType::kUser}) {
    m.type = t;
    REQUIRE_FALSE(s.engines_[0]->OnMessage(m, now, &out).ok());
  }
  m.type = MsgType::kReadReq;
  m.page = 99;
  REQUIRE_FALSE(s.engines_[0]->OnMessage(m, now, &out).ok());  // out of range
  m.page = 0;
  m.src = 200;
  REQUIRE_FALSE(s.engines_[0]->OnMessage(m, now, &out).ok());  // bad node
  m.src = 1;
  REQUIRE_FALSE(s.engines_[1]->OnMessage(m, now, &out).ok());  // node 1 does not manage page 0
  m.type = MsgType::kFwdRead;
  REQUIRE_FALSE(s.engines_[1]->OnMessage(m, now, &out).ok());  // node 1 does not own page 0
  m.type = MsgType::kInvalidate;
  m.src = 0;
  REQUIRE_FALSE(s.engines_[1]->OnMessage(m, now, &out).ok());  // node 1 holds no copy
  REQUIRE(out.empty());
}

TEST_CASE("a request that is never answered times out with the page named", "[dsm][protocol]") {
  Sim s(3, 2);
  s.AddThread(1, {{1, true}});
  s.RunRandom(1);  // node 1 owns page 1
  REQUIRE(s.engines_[0]->directory(1).owner == 1);
  REQUIRE(s.engines_[2]->NextDeadline() == absl::InfiniteFuture());  // nothing in flight: no deadline
  s.AddThread(2, {{1, false}});
  s.StepThread(1);
  // The fault thread sleeps until this deadline: the earliest at which CheckTimeouts can fail.
  const absl::Time due = s.engines_[2]->NextDeadline();
  REQUIRE(due > s.now_);
  REQUIRE(due < s.now_ + absl::Seconds(2));
  REQUIRE(s.engines_[2]->CheckTimeouts(due).ok());
  REQUIRE(absl::IsDeadlineExceeded(s.engines_[2]->CheckTimeouts(due + absl::Milliseconds(1))));
  REQUIRE(s.engines_[2]->CheckTimeouts(s.now_ + absl::Milliseconds(500)).ok());
  absl::Status st = s.engines_[2]->CheckTimeouts(s.now_ + absl::Seconds(2));
  REQUIRE(absl::IsDeadlineExceeded(st));
  REQUIRE(st.message().find("page 0x1") != absl::string_view::npos);
  // The manager side too: the request delivered, the forward to the owner never answered.
  REQUIRE(DeliverFirst(s, MsgType::kReadReq));
  REQUIRE(s.net_.size() == 1);
  REQUIRE(s.net_[0].type == MsgType::kFwdRead);
  REQUIRE(s.engines_[0]->CheckTimeouts(s.now_ + absl::Milliseconds(500)).ok());
  REQUIRE(absl::IsDeadlineExceeded(s.engines_[0]->CheckTimeouts(s.now_ + absl::Seconds(2))));
}

TEST_CASE("a pinned page's requests wait until the last unpin, then are served in order", "[dsm][protocol]") {
  Sim s(2, 4);
  s.AddThread(0, {{2, true}});
  REQUIRE(s.StepThread(0));
  REQUIRE(s.StepThread(0));
  REQUIRE(s.engines_[0]->state(2) == PageState::kModified);
  // Pin needs the page Modified here and managed here; a page it does not hold is refused.
  CHECK(s.engines_[1]->Pin(2).code() == absl::StatusCode::kFailedPrecondition);
  REQUIRE(s.engines_[0]->Pin(2).ok());
  REQUIRE(s.engines_[0]->Pin(2).ok());  // pins nest
  s.AddThread(1, {{2, true}});
  s.StepThread(1);  // node 1's write fault -> WRITE_REQ to the home
  REQUIRE(DeliverFirst(s, MsgType::kWriteReq));
  CHECK(s.net_.empty());  // held: nothing is sent while the page is pinned
  CHECK(s.engines_[0]->state(2) == PageState::kModified);
  std::vector<Message> out;
  REQUIRE(s.engines_[0]->Unpin(2, absl::Now(), &out).ok());
  CHECK(out.empty());  // still pinned once
  REQUIRE(s.engines_[0]->Unpin(2, absl::Now(), &out).ok());
  REQUIRE(!out.empty());  // the held request now runs
  for (Message& m : out) s.net_.push_back(std::move(m));
  s.RunRandom(5);
  REQUIRE(s.failure_.empty());
  CHECK(s.engines_[1]->state(2) == PageState::kModified);
  CHECK(s.engines_[0]->state(2) == PageState::kInvalid);
  CHECK(s.engines_[0]->Unpin(2, absl::Now(), &out).code() == absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace coalesce::dsm

namespace coalesce::dsm {
namespace {

TEST_CASE("the manager counts the pages each node owns (coalesce ctl status)", "[dsm][protocol]") {
  Sim s(3, 4);
  std::vector<uint64_t> owned = s.engines_[0]->OwnedPagesPerNode();
  REQUIRE(owned.size() == kMaxNodes);
  CHECK(owned[0] == 4);  // at start the home owns every page
  s.AddThread(1, {{0, true}, {1, true}});
  s.AddThread(2, {{2, true}, {3, false}});
  s.RunRandom(5);
  REQUIRE(s.failure_.empty());
  REQUIRE(s.quiescent());
  owned = s.engines_[0]->OwnedPagesPerNode();
  CHECK(owned[1] == 2);
  CHECK(owned[2] == 1);
  CHECK(owned[0] == 1);  // page 3 was only read: the home still owns it
}

}  // namespace
}  // namespace coalesce::dsm
