// A deterministic simulator for the DSM protocol: N ProtocolEngines over simulated memories, a network that
// delivers in-flight messages in any order that keeps each node pair's messages in sequence (what one TCP
// connection per pair gives; the test picks, or a seeded random choice interleaves pairs arbitrarily),
// and accessor "threads" that block on faults and are woken like the kernel wakes them. After every step it checks
// the single-writer/multi-reader invariant, and every read is checked against a sequentially consistent reference
// memory (the value of the last write performed, in the order the simulator performed them).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "dsm/directory_placement.h"
#include "dsm/memory_allowance.h"
#include "dsm/protocol_engine.h"
#include "dsm/resident_pages.h"

namespace coalesce::dsm::sim {

class SimMemory final : public PageMemory {
 public:
  struct Page {
    bool present = false;
    bool writable = false;
    uint64_t value = 0;  // first 8 bytes of the page; the rest stays zero
    uint64_t wake_epoch = 0;
  };
  explicit SimMemory(uint64_t pages) : pages_(pages) {}
  absl::Status Install(uint64_t page, const uint8_t* data, bool writable) override {
    Page& p = pages_[page];
    if (p.present) return absl::AlreadyExistsError("present");
    p.present = true;
    p.writable = writable;
    p.value = 0;
    if (data != nullptr) std::memcpy(&p.value, data, sizeof(p.value));
    ++p.wake_epoch;
    return absl::OkStatus();
  }
  absl::Status MakeWritable(uint64_t page) override {
    Page& p = pages_[page];
    if (!p.present) return absl::InternalError("MakeWritable on an absent page");
    p.writable = true;
    ++p.wake_epoch;
    return absl::OkStatus();
  }
  absl::Status WriteProtect(uint64_t page) override {
    pages_[page].writable = false;
    return absl::OkStatus();
  }
  absl::Status ReadPage(uint64_t page, uint8_t* out) override {
    std::memset(out, 0, kPageSize);
    if (pages_[page].present) std::memcpy(out, &pages_[page].value, sizeof(uint64_t));
    return absl::OkStatus();
  }
  absl::Status Drop(uint64_t page) override {
    pages_[page].present = false;
    pages_[page].writable = false;
    pages_[page].value = 0;
    return absl::OkStatus();
  }
  absl::Status Wake(uint64_t page) override {
    ++pages_[page].wake_epoch;
    return absl::OkStatus();
  }
  std::vector<Page> pages_;
};

struct Op {
  uint64_t page;
  bool write;
};

struct Thread {
  int node;
  std::vector<Op> ops;
  size_t next = 0;
  bool blocked = false;
  uint64_t blocked_epoch = 0;
  [[nodiscard]] bool done() const { return next >= ops.size(); }
};

class Sim {
 public:
  Sim(int nodes, uint64_t pages, std::unique_ptr<DirectoryPlacement> placement_for_all = nullptr,
      NodeId home = 0)
      : pages_(pages), home_(home), reference_(pages, 0) {
    placement_ = placement_for_all ? std::move(placement_for_all) : MakeHomePlacement(home);
    for (int n = 0; n < nodes; ++n) {
      mem_.push_back(std::make_unique<SimMemory>(pages));
      stats_.push_back(std::make_unique<DsmStats>(pages));
      EngineConfig c;
      c.self = static_cast<NodeId>(n);
      c.home = home;
      c.num_pages = pages;
      c.request_timeout = absl::Seconds(1);
      PageMemory* memory = mem_.back().get();
      if (n == home) {
        // The home counts its present pages, as DsmNode's does, for the memory allowance (EnableSpilling).
        resident_ = std::make_unique<ResidentPages>(memory, pages);
        memory = resident_.get();
      }
      engines_.push_back(std::make_unique<ProtocolEngine>(c, placement_.get(), memory, stats_.back().get()));
    }
  }

  // From now on the home keeps at most `allowance` pages present, spilling to `targets` (node, capacity); RunRandom
  // interleaves spill rounds (two pages each) with everything else.
  void EnableSpilling(uint64_t allowance, const std::vector<std::pair<NodeId, uint64_t>>& targets) {
    allowance_.SetAllowance(allowance);
    for (const auto& [node, cap] : targets) allowance_.SetTarget(node, cap);
    spilling_ = true;
  }
  // One round of the home's spill thread.
  MemoryAllowance::Round SpillRound(size_t batch = 2) {
    std::vector<Message> out;
    absl::StatusOr<MemoryAllowance::Round> r = allowance_.Step(engines_[home_].get(), resident_.get(), {}, batch, &out);
    Check(r.status());
    Enqueue(std::move(out));
    return r.ok() ? *r : MemoryAllowance::Round{};
  }

  void AddThread(int node, std::vector<Op> ops) { threads_.push_back(Thread{node, std::move(ops)}); }

  // Tries the thread's next access once. Returns false if it is blocked and not woken.
  bool StepThread(size_t t) {
    Thread& th = threads_[t];
    if (th.done()) return false;
    const Op op = th.ops[th.next];
    SimMemory::Page& p = mem_[th.node]->pages_[op.page];
    if (th.blocked && p.wake_epoch == th.blocked_epoch) return false;
    th.blocked = false;
    if (p.present && (!op.write || p.writable)) {
      if (op.write) {
        p.value = ++write_counter_;
        reference_[op.page] = p.value;
      } else if (p.value != reference_[op.page]) {
        Fail(absl::StrFormat("node %d read %u from page %u, the last write was %u", th.node, p.value, op.page,
                             reference_[op.page]));
      }
      ++th.next;
      return true;
    }
    // Fault: blocks until a wake on this page.
    th.blocked = true;
    th.blocked_epoch = p.wake_epoch;
    std::vector<Message> out;
    Check(engines_[th.node]->OnFault(op.page, op.write, p.present, now_, &out));
    Enqueue(std::move(out));
    return true;
  }

  void Deliver(size_t index) {
    Message m = std::move(net_[index]);
    net_.erase(net_.begin() + static_cast<long>(index));
    std::vector<Message> out;
    Check(engines_[m.dst]->OnMessage(m, now_, &out));
    Enqueue(std::move(out));
  }

  // Indices of the messages that may be delivered next: the oldest of each (source, destination) pair.
  [[nodiscard]] std::vector<size_t> Deliverable() const {
    std::vector<size_t> out;
    std::vector<std::pair<NodeId, NodeId>> seen;
    for (size_t i = 0; i < net_.size(); ++i) {
      std::pair<NodeId, NodeId> key{net_[i].src, net_[i].dst};
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
      seen.push_back(key);
      out.push_back(i);
    }
    return out;
  }

  void Enqueue(std::vector<Message> out) {
    for (auto& m : out) net_.push_back(std::move(m));
  }

  // Runs until every thread is done and the network is empty; random choice of the next event.
  void RunRandom(uint64_t seed, size_t max_steps = 200000) {
    std::mt19937_64 rng(seed);
    for (size_t step = 0; step < max_steps && failure_.empty(); ++step) {
      std::vector<size_t> runnable;
      for (size_t t = 0; t < threads_.size(); ++t) {
        const Thread& th = threads_[t];
        if (th.done()) continue;
        const auto& p = mem_[th.node]->pages_[th.ops[th.next].page];
        if (!th.blocked || p.wake_epoch != th.blocked_epoch) runnable.push_back(t);
      }
      if (runnable.empty() && net_.empty()) {
        for (const auto& th : threads_) {
          if (!th.done()) Fail(absl::StrFormat("deadlock: node %d blocked on page %u", th.node, th.ops[th.next].page));
        }
        return;
      }
      const std::vector<size_t> deliverable = Deliverable();
      const size_t spill_choice = spilling_ ? 1 : 0;
      const size_t choices = runnable.size() + deliverable.size() + spill_choice;
      const size_t pick = std::uniform_int_distribution<size_t>(0, choices - 1)(rng);
      if (pick < runnable.size()) {
        StepThread(runnable[pick]);
      } else if (pick < runnable.size() + deliverable.size()) {
        Deliver(deliverable[pick - runnable.size()]);
      } else {
        SpillRound();
      }
      CheckInvariants();
      now_ += absl::Microseconds(10);
    }
    if (failure_.empty()) {
      for (const auto& th : threads_) {
        if (!th.done()) Fail("did not finish within the step limit");
      }
    }
  }

  // Single writer or many readers, and every valid copy holds the reference value.
  void CheckInvariants() {
    for (uint64_t page = 0; page < pages_; ++page) {
      int modified = 0, valid = 0;
      for (size_t n = 0; n < engines_.size(); ++n) {
        PageState s = engines_[n]->state(page);
        const auto& mp = mem_[n]->pages_[page];
        if (s == PageState::kModified) ++modified;
        if (s != PageState::kInvalid) ++valid;
        if (s == PageState::kInvalid && mp.present) Fail(absl::StrFormat("node %u: page %u present but Invalid", n, page));
        if (mp.writable && s != PageState::kModified) {
          Fail(absl::StrFormat("node %u: page %u writable in state %s", n, page, PageStateName(s)));
        }
        if (s != PageState::kInvalid && mp.present && mp.value != reference_[page]) {
          Fail(absl::StrFormat("node %u: page %u holds %u, reference %u", n, page, mp.value, reference_[page]));
        }
      }
      if (modified > 1 || (modified == 1 && valid > 1)) {
        Fail(absl::StrFormat("page %u: %d Modified, %d valid copies", page, modified, valid));
      }
    }
  }

  void Check(const absl::Status& s) {
    if (!s.ok()) Fail(s.ToString());
  }
  void Fail(const std::string& why) {
    if (failure_.empty()) failure_ = why;
  }

  [[nodiscard]] bool quiescent() const {
    if (!net_.empty()) return false;
    for (const auto& e : engines_) {
      if (e->pending_requests() != 0 || e->active_operations() != 0) return false;
    }
    return true;
  }

  uint64_t pages_;
  NodeId home_;
  std::unique_ptr<ResidentPages> resident_;
  MemoryAllowance allowance_;
  bool spilling_ = false;
  std::unique_ptr<DirectoryPlacement> placement_;
  std::vector<std::unique_ptr<SimMemory>> mem_;
  std::vector<std::unique_ptr<DsmStats>> stats_;
  std::vector<std::unique_ptr<ProtocolEngine>> engines_;
  std::vector<Thread> threads_;
  std::vector<Message> net_;
  std::vector<uint64_t> reference_;
  uint64_t write_counter_ = 0;
  absl::Time now_ = absl::UnixEpoch();
  std::string failure_;
};

inline std::vector<Op> RandomOps(std::mt19937_64& rng, size_t count, uint64_t pages, double write_ratio) {
  std::vector<Op> ops;
  for (size_t i = 0; i < count; ++i) {
    ops.push_back(Op{std::uniform_int_distribution<uint64_t>(0, pages - 1)(rng),
                     std::uniform_real_distribution<double>(0, 1)(rng) < write_ratio});
  }
  return ops;
}

}  // namespace coalesce::dsm::sim
