// What a memory edge costs (docs/COALESCENCE.md, "Memory edges"; docs/DSM.md, "Spilling to memory nodes"): a home
// with a memory allowance of a quarter of its RAM writes all of it, spilling the oldest pages to a memory node,
// then reads spilled pages back. Against, in the same run: the same writes on a home with no allowance (all
// local), and the ordinary remote read miss (an edge node reading a page the home owns), samples alternating.
// Memory node and baseline home are forked child processes on TCP loopback; this process holds the spilling home
// and the baseline's edge node, takes every sample and checks every page's contents.
// Usage: dsm_spill_bench [pages=16384] [samples=2000]
// The last line printed is one JSON object: the read of a spilled page against the ordinary remote read miss.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench/dsm/bench_support.h"
#include "dsm/dsm_node.h"

namespace coalesce::dsm::bench {
namespace {

struct Child {
  pid_t pid = 0;
  int to = -1, from = -1;
};

template <typename Body>
Child Fork(Body body) {
  int down[2], up[2];
  if (::pipe(down) < 0 || ::pipe(up) < 0) std::exit(1);
  Child c;
  c.pid = ::fork();
  if (c.pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    body(down[0], up[1]);
    ::_exit(0);
  }
  c.to = down[1];
  c.from = up[0];
  return c;
}

// Node 1 lending memory: it connects to the home whose port it is given and holds what it is sent until "stop".
void MemoryNode(int in, int out, uint64_t pages) {
  const std::string port = ReadLine(in);
  auto node = DsmNode::CreateWithOwnMemory(BenchNodeConfig(1), pages * kPageSize);
  if (!node.ok() || !(*node)->Connect(DsmPeer{0, "127.0.0.1", static_cast<uint16_t>(std::stoi(port))}).ok()) {
    ::_exit(1);
  }
  WriteLine(out, "ready");
  (void)ReadLine(in);
  (*node)->Stop();
}

// The baseline's home: every page Modified with known contents.
void BaselineHome(int in, int out, uint64_t pages) {
  auto node = DsmNode::CreateWithOwnMemory(BenchNodeConfig(0), pages * kPageSize);
  if (!node.ok()) ::_exit(1);
  for (uint64_t p = 0; p < pages; ++p) *Word(**node, p) = p * 3 + 1;
  WriteLine(out, std::to_string((*node)->port()));
  (void)ReadLine(in);
  (*node)->Stop();
}

uint64_t Timed(auto&& f) {
  const uint64_t t0 = NowNs();
  f();
  return NowNs() - t0;
}

int Main(uint64_t pages, uint64_t samples) {
  const uint64_t allowance = pages / 4;
  // Fork before this process has any thread.
  const Child memory_node = Fork([pages](int in, int out) { MemoryNode(in, out, pages); });
  const Child baseline_home = Fork([pages](int in, int out) { BaselineHome(in, out, pages); });

  auto home_or = DsmNode::CreateWithOwnMemory(BenchNodeConfig(0), pages * kPageSize);
  auto local_or = DsmNode::CreateWithOwnMemory(BenchNodeConfig(0), pages * kPageSize);  // no allowance, no peers
  if (!home_or.ok() || !local_or.ok()) return 1;
  DsmNode& home = **home_or;
  DsmNode& local = **local_or;
  WriteLine(memory_node.to, std::to_string(home.port()));
  if (ReadLine(memory_node.from) != "ready" || !home.WaitForPeers({1}, absl::Seconds(10)).ok()) {
    std::fprintf(stderr, "the memory node did not join\n");
    return 1;
  }
  const std::string base_port = ReadLine(baseline_home.from);
  auto edge_or = DsmNode::CreateWithOwnMemory(BenchNodeConfig(1), pages * kPageSize);
  if (!edge_or.ok() ||
      !(*edge_or)->Connect(DsmPeer{0, "127.0.0.1", static_cast<uint16_t>(std::stoi(base_port))}).ok()) {
    std::fprintf(stderr, "cannot reach the baseline home\n");
    return 1;
  }
  DsmNode& edge = **edge_or;
  home.SetMemoryNode(1, pages);
  home.SetMemoryAllowance(allowance);

  // Writes of every page: the spilling home against the all-local one, in eight alternating chunks.
  std::fprintf(stderr, "writing %lu pages (%lu MiB) with an allowance of %lu pages, and without\n", pages,
               pages * kPageSize >> 20, allowance);
  uint64_t spill_ns = 0, local_ns = 0;
  const uint64_t chunk = std::max<uint64_t>(1, pages / 8);
  for (uint64_t first = 0; first < pages; first += chunk) {
    const uint64_t end = std::min(pages, first + chunk);
    spill_ns += Timed([&] { for (uint64_t p = first; p < end; ++p) *Word(home, p) = p * 5 + 2; });
    local_ns += Timed([&] { for (uint64_t p = first; p < end; ++p) *Word(local, p) = p * 5 + 2; });
  }
  const uint64_t peak_after_writes = home.peak_resident_pages();
  const absl::Time settle = absl::Now() + absl::Seconds(30);
  while (home.resident_pages() > allowance && absl::Now() < settle) absl::SleepFor(absl::Milliseconds(2));
  const uint64_t spilled = home.stats().pages_spilled.load();
  std::fprintf(stderr, "  %lu pages spilled; %lu present at home (peak %lu)\n", spilled, home.resident_pages(),
               peak_after_writes);

  // Reads of spilled pages (from the oldest written) against the edge's read miss of a home-owned page.
  std::vector<uint64_t> refault, miss;
  uint64_t wrong = 0;
  const uint64_t n = std::min<uint64_t>(samples, pages / 4);
  std::fprintf(stderr, "sampling %lu reads of each kind\n", n);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t p = 2 * i;  // every other page: the oldest, spilled; never read ahead
    uint64_t v = 0, w = 0;
    if (i % 2 == 0) {
      refault.push_back(Timed([&] { v = *Word(home, p); }));
      miss.push_back(Timed([&] { w = *Word(edge, p); }));
    } else {
      miss.push_back(Timed([&] { w = *Word(edge, p); }));
      refault.push_back(Timed([&] { v = *Word(home, p); }));
    }
    wrong += (v != p * 5 + 2) + (w != p * 3 + 1);
  }
  for (uint64_t p = 0; p < pages; ++p) wrong += *Word(home, p) != p * 5 + 2;  // everything, spilled or not
  const Summary r = Summarize(refault), m = Summarize(miss);
  const double spill_pps = static_cast<double>(pages) / (static_cast<double>(spill_ns) / 1e9);
  const double local_pps = static_cast<double>(pages) / (static_cast<double>(local_ns) / 1e9);
  std::printf("Memory edge: a home with an allowance of %lu of %lu pages, a memory node, TCP loopback (median / p99, us)\n",
              allowance, pages);
  std::printf("  read of a spilled page   %7.1f / %7.1f   edge read miss (baseline) %7.1f / %7.1f   ratio %.3f\n",
              r.median_us, r.p99_us, m.median_us, m.p99_us, r.median_us / m.median_us);
  std::printf("  first writes: spilling %.0f pages/s, all local %.0f pages/s (ratio %.3f); peak present %lu\n",
              spill_pps, local_pps, spill_pps / local_pps, peak_after_writes);
  std::printf("  pages spilled %lu, own copies dropped %lu, pages with wrong contents %lu\n", spilled,
              home.stats().copies_dropped.load(), wrong);
  std::fflush(stdout);
  for (const Child& c : {memory_node, baseline_home}) WriteLine(c.to, "stop");
  edge.Stop();
  home.Stop();
  for (const Child& c : {memory_node, baseline_home}) ::waitpid(c.pid, nullptr, 0);
  std::printf(
      "{\"name\":\"dsm_spilled_page_read_latency\",\"value\":%.1f,\"unit\":\"us\",\"baseline\":%.1f,\"ratio\":%.3f,"
      "\"baseline_is\":\"edge read miss of a home-owned page\",\"spilled_read_p99_us\":%.1f,"
      "\"first_write_pages_per_sec_spilling\":%.0f,\"first_write_pages_per_sec_local\":%.0f,"
      "\"pages\":%lu,\"allowance_pages\":%lu,\"peak_present_pages\":%lu,\"pages_spilled\":%lu,\"wrong_pages\":%lu}\n",
      r.median_us, m.median_us, r.median_us / m.median_us, r.p99_us, spill_pps, local_pps, pages, allowance,
      peak_after_writes, spilled, wrong);
  return wrong == 0 ? 0 : 1;
}

}  // namespace
}  // namespace coalesce::dsm::bench

int main(int argc, char** argv) {
  const long pages = argc > 1 ? std::atol(argv[1]) : 16384;
  const long samples = argc > 2 ? std::atol(argv[2]) : 2000;
  return coalesce::dsm::bench::Main(pages >= 64 ? static_cast<uint64_t>(pages) : 16384,
                                    samples > 0 ? static_cast<uint64_t>(samples) : 2000);
}
