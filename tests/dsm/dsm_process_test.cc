// Multi-process DSM tests: every node is its own process with its own memory; they share it only through the DSM
// over TCP (loopback, or veth between network namespaces). One binary, one mode per meson test:
//   counter | message_passing | false_sharing | random_sc | netns_counter | kill | kvm_counter
// Exit 0 = pass, 77 = skipped (no root for namespaces), else fail. kvm_counter without /dev/kvm fails
// (tests/kvm_required.h).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/dsm/kvm_counter_guest.h"
#include "tests/dsm/netns_mesh.h"
#include "tests/dsm/process_cluster.h"
#include "tests/kvm_required.h"

namespace coalesce::dsm::test {
namespace {

constexpr uint64_t kPage = kPageSize;

template <typename T>
std::atomic<T>* At(DsmNode& n, uint64_t offset) {
  return reinterpret_cast<std::atomic<T>*>(n.data() + offset);
}

// Work outside the shared data, so that nodes interleave instead of each finishing its loop in one go.
void BusyWork(absl::Duration d) {
  const absl::Time end = absl::Now() + d;
  while (absl::Now() < end) __builtin_ia32_pause();
}

std::string OkWithTraffic(const DsmNode& n) {
  return absl::StrCat("ok pages_received=", n.stats().pages_received.load(),
                      " ownership_given=", n.stats().ownership_transfers.load());
}

int Report(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "PASS" : "FAIL", what.c_str());
  return ok ? 0 : 1;
}

// ---- spinlock counter: lock word on page 1, counter on page 2.
NodeRole CounterRole(int nodes, int increments) {
  NodeRole r;
  r.run = [increments](int, DsmNode& n) {
    auto* lock = At<uint32_t>(n, 1 * kPage);
    auto* counter = reinterpret_cast<volatile uint64_t*>(n.data() + 2 * kPage);
    for (int i = 0; i < increments; ++i) {
      while (lock->exchange(1, std::memory_order_acquire) != 0) {
        while (lock->load(std::memory_order_relaxed) != 0) __builtin_ia32_pause();
      }
      *counter = *counter + 1;  // plain read-modify-write: only the lock makes it exact
      lock->store(0, std::memory_order_release);
      BusyWork(absl::Microseconds(30));
    }
    return OkWithTraffic(n);
  };
  r.check = [nodes, increments](int, DsmNode& n) {
    uint64_t v = *reinterpret_cast<volatile uint64_t*>(n.data() + 2 * kPage);
    uint64_t want = static_cast<uint64_t>(nodes) * static_cast<uint64_t>(increments);
    return v == want ? std::string("ok") : absl::StrCat("FAIL counter ", v, " want ", want);
  };
  return r;
}

bool AllOk(const ProcessCluster& c, std::string* why) {
  for (size_t i = 0; i < c.outcomes().size(); ++i) {
    const auto& o = c.outcomes()[i];
    if (o.result.rfind("FAIL", 0) == 0 || o.check.rfind("FAIL", 0) == 0) {
      *why = absl::StrCat("node ", i, ": ", o.result, " / ", o.check);
      return false;
    }
  }
  return true;
}

int RunCluster(ClusterOptions opt, NodeRole role, const std::string& name) {
  ProcessCluster c(std::move(opt), std::move(role));
  const absl::Time start = absl::Now();
  if (!c.Start()) return Report(false, name + ": " + c.error());
  if (!c.RunAndCheck()) return Report(false, name + ": " + c.error());
  std::string why;
  if (!AllOk(c, &why)) return Report(false, name + ": " + why);
  std::string traffic;
  for (size_t i = 0; i < c.outcomes().size(); ++i) absl::StrAppend(&traffic, "\n  node ", i, ": ", c.outcomes()[i].result);
  return Report(true, absl::StrCat(name, " in ", absl::FormatDuration(absl::Now() - start), traffic));
}

int Counter() {
  ClusterOptions o;
  o.nodes = 3;
  return RunCluster(o, CounterRole(3, 1000), "3 nodes x 1000 spinlock increments == 3000");
}

// ---- message passing: node 0 writes a data page then a flag; a reader that sees flag f sees data >= f.
int MessagePassing() {
  constexpr uint64_t kRounds = 300;
  NodeRole r;
  r.run = [](int index, DsmNode& n) {
    auto* data = At<uint64_t>(n, 10 * kPage);
    auto* flag = At<uint64_t>(n, 11 * kPage);
    if (index == 0) {
      for (uint64_t round = 1; round <= kRounds; ++round) {
        for (int w = 0; w < 512; ++w) data[w].store(round, std::memory_order_relaxed);
        flag->store(round, std::memory_order_release);
        BusyWork(absl::Microseconds(100));
      }
      return OkWithTraffic(n);
    }
    uint64_t last = 0, seen = 0;
    while (last < kRounds) {
      uint64_t f = flag->load(std::memory_order_acquire);
      if (f <= last) continue;
      for (int w = 0; w < 512; ++w) {
        uint64_t d = data[w].load(std::memory_order_relaxed);
        if (d < f) return absl::StrCat("FAIL saw flag ", f, " but data[", w, "] = ", d);
      }
      last = f;
      ++seen;
    }
    return absl::StrCat("ok saw ", seen, " flags");
  };
  ClusterOptions o;
  o.nodes = 3;
  return RunCluster(o, r, "message passing, 1 writer 2 readers, 300 rounds");
}

// ---- false sharing: node i increments word i of one page; every word ends at K.
int FalseSharing() {
  constexpr int kIncrements = 1500;
  constexpr int kNodes = 3;
  NodeRole r;
  r.run = [](int index, DsmNode& n) {
    auto* w = reinterpret_cast<volatile uint64_t*>(n.data() + 20 * kPage) + index;
    for (int i = 0; i < kIncrements; ++i) {
      *w = *w + 1;
      BusyWork(absl::Microseconds(20));
    }
    return OkWithTraffic(n);
  };
  r.check = [](int, DsmNode& n) {
    auto* w = reinterpret_cast<volatile uint64_t*>(n.data() + 20 * kPage);
    for (int i = 0; i < kNodes; ++i) {
      if (w[i] != kIncrements) return absl::StrCat("FAIL word ", i, " = ", w[i]);
    }
    return std::string("ok");
  };
  ClusterOptions o;
  o.nodes = kNodes;
  return RunCluster(o, r, "false sharing: 3 counters on one page, 1500 increments each");
}

// ---- random reads and atomic increments on 64 pages, checked against a sequentially consistent reference: per
// page a counter, so the increments' results over all nodes must be exactly 0..T-1 (none lost or duplicated),
// every node's observations of a page never go backwards, and every node ends seeing T.
int RandomSc() {
  constexpr int kNodes = 3, kPages = 64, kOps = 1500;
  constexpr uint64_t kFirst = 32;
  NodeRole r;
  r.run = [](int index, DsmNode& n) {
    std::mt19937_64 rng(1234 + static_cast<uint64_t>(index));
    std::vector<uint64_t> last(kPages, 0);
    std::vector<std::vector<uint64_t>> got(kPages);
    for (int i = 0; i < kOps; ++i) {
      const int p = static_cast<int>(rng() % kPages);
      auto* word = At<uint64_t>(n, (kFirst + p) * kPage);
      if (rng() % 2) {
        uint64_t v = word->fetch_add(1);
        if (v < last[p]) return absl::StrCat("FAIL page ", p, " went back: ", v, " after ", last[p]);
        last[p] = v + 1;
        got[p].push_back(v);
      } else {
        uint64_t v = word->load();
        if (v < last[p]) return absl::StrCat("FAIL page ", p, " read ", v, " after ", last[p]);
        last[p] = v;
      }
    }
    std::string out = "ok";
    for (int p = 0; p < kPages; ++p) {
      absl::StrAppend(&out, " ", p, ":");
      for (size_t k = 0; k < got[p].size(); ++k) absl::StrAppend(&out, k ? "," : "", got[p][k]);
    }
    return out;
  };
  r.check = [](int, DsmNode& n) {
    std::string out = "ok";
    for (int p = 0; p < kPages; ++p) absl::StrAppend(&out, " ", At<uint64_t>(n, (kFirst + p) * kPage)->load());
    return out;
  };
  ClusterOptions o;
  o.nodes = kNodes;
  ProcessCluster c(o, r);
  if (!c.Start() || !c.RunAndCheck()) return Report(false, "random: " + c.error());
  std::string why;
  if (!AllOk(c, &why)) return Report(false, "random: " + why);
  std::vector<std::vector<uint64_t>> all(kPages);
  for (const auto& oc : c.outcomes()) {
    std::vector<std::string> parts = absl::StrSplit(oc.result, ' ', absl::SkipEmpty());
    for (size_t k = 1; k < parts.size(); ++k) {
      std::vector<std::string> pv = absl::StrSplit(parts[k], ':');
      int p = std::stoi(pv[0]);
      for (const auto& v : absl::StrSplit(pv[1], ',', absl::SkipEmpty())) {
        uint64_t x;
        if (absl::SimpleAtoi(v, &x)) all[p].push_back(x);
      }
    }
  }
  uint64_t total = 0;
  for (int p = 0; p < kPages; ++p) {
    std::sort(all[p].begin(), all[p].end());
    for (size_t k = 0; k < all[p].size(); ++k) {
      if (all[p][k] != k) return Report(false, absl::StrCat("page ", p, ": increment results not 0..T-1 at ", k));
    }
    total += all[p].size();
    for (size_t node = 0; node < c.outcomes().size(); ++node) {
      std::vector<std::string> finals = absl::StrSplit(c.outcomes()[node].check, ' ', absl::SkipEmpty());
      if (finals.size() != kPages + 1 || finals[p + 1] != absl::StrCat(all[p].size())) {
        return Report(false, absl::StrCat("node ", node, " sees page ", p, " final ",
                                          finals.size() > static_cast<size_t>(p + 1) ? finals[p + 1] : "?",
                                          ", reference ", all[p].size()));
      }
    }
  }
  return Report(true, absl::StrCat("random: ", kNodes, " nodes x ", kOps, " ops on ", kPages, " pages, ", total,
                                   " increments, all sequentially consistent"));
}

// ---- the counter with every node in its own network namespace, linked by veth pairs.
int NetnsCounter() {
  NetnsMesh mesh(3);
  if (!mesh.Create()) {
    std::printf("SKIP: %s\n", mesh.error().c_str());
    return std::getenv("COALESCE_REQUIRE_NETNS") != nullptr ? 1 : kSkipExit;
  }
  NodeRole r = CounterRole(3, 1000);
  r.before_node = [&mesh](int i) { return mesh.Enter(i); };
  ClusterOptions o;
  o.nodes = 3;
  o.listen_address = {"0.0.0.0", "0.0.0.0", "0.0.0.0"};
  o.peer_host = [&mesh](int i, int j) { return mesh.AddressOf(j, i); };
  return RunCluster(o, r, "netns: 3 nodes in 3 namespaces over veth, 3000 increments");
}

// ---- failure: SIGKILL one node mid-run; the survivors report the loss and exit non-zero within the timeout.
int Kill() {
  ClusterOptions o;
  o.nodes = 3;
  o.request_timeout = absl::Seconds(2);
  o.peer_timeout = absl::Seconds(1);
  ProcessCluster c(o, CounterRole(3, 100000000));
  if (!c.Start()) return Report(false, "kill: " + c.error());
  c.Go();
  absl::SleepFor(absl::Milliseconds(300));
  c.Kill(2, SIGKILL);
  const absl::Duration took = c.WaitAll(absl::Seconds(10));
  const auto& out = c.outcomes();
  std::string codes = absl::StrCat(out[0].exit_code, ",", out[1].exit_code, ",", out[2].exit_code);
  const bool ok = out[0].exit_code == kPeerLostExit && out[1].exit_code == kPeerLostExit &&
                  out[2].exit_code == 128 + SIGKILL && took < o.request_timeout + absl::Seconds(1);
  return Report(ok, absl::StrCat("kill node 2 mid-run: exit codes ", codes, " (want 3,3,137), survivors gone after ",
                                 absl::FormatDuration(took)));
}

// ---- two VMs in two processes, one vCPU each, RAM shared only through the DSM, spinlock counter guest.
int KvmCounter() {
  if (const std::string problem = coalesce::testing::KvmProblem(); !problem.empty()) {
    std::printf("FAIL: %s\n", problem.c_str());
    return 1;
  }
  constexpr uint32_t kIncrements = 2000;
  NodeRole r;
  r.make_node = [](int index, const DsmNodeConfig& cfg) { return CreateGuestNode(index, cfg, kIncrements); };
  r.run = [](int index, DsmNode& n) {
    std::string out = RunCounterGuest(index);
    return out.rfind("ok", 0) == 0 ? out + " " + OkWithTraffic(n) : out;
  };
  r.check = [](int, DsmNode& n) {
    uint32_t v = *reinterpret_cast<volatile uint32_t*>(n.data() + kGuestCounterAddr);
    return v == 2 * kIncrements ? absl::StrCat("ok ", v) : absl::StrCat("FAIL guest counter ", v);
  };
  ClusterOptions o;
  o.nodes = 2;
  return RunCluster(o, r, "KVM: 2 VMs x 1 vCPU, 2000 guest spinlock increments each == 4000");
}

}  // namespace
}  // namespace coalesce::dsm::test

int main(int argc, char** argv) {
  using namespace coalesce::dsm::test;
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "counter") return Counter();
  if (mode == "message_passing") return MessagePassing();
  if (mode == "false_sharing") return FalseSharing();
  if (mode == "random_sc") return RandomSc();
  if (mode == "netns_counter") return NetnsCounter();
  if (mode == "kill") return Kill();
  if (mode == "kvm_counter") return KvmCounter();
  std::fprintf(stderr, "usage: %s counter|message_passing|false_sharing|random_sc|netns_counter|kill|kvm_counter\n",
               argv[0]);
  return 2;
}
