// DSM fault latency and first-touch throughput against the raw baseline measured in the same run.
//   read of an Invalid page (owner Modified, and owner Shared), write of an Invalid page, upgrade Shared ->
//   Modified (the home owns the page), invalidation of a page held by k = 1, 2, 3 sharers (node 1 owns it Shared
//   and upgrades; the manager invalidates the k others), sequential first touch (pages/s).
// Four DsmNodes, each in its own process with its own memfd, over TCP loopback; this process is node 1 and takes
// every sample. The baseline runs in this process on the same path (loopback TCP, a handler blocked in poll).
// The last line printed is one JSON object (the read fault, the goal: ratio <= 1.3).
// Usage: dsm_fault_bench [samples=1000] [throughput_pages=4096]
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/dsm/bench_support.h"
#include "bench/dsm/raw_baseline.h"
#include "dsm/dsm_node.h"

namespace coalesce::dsm::bench {
namespace {

// Page ranges, one fresh page per sample and measurement.
struct Layout {
  uint64_t n;
  uint64_t read_m() const { return 0; }            // owner (home) Modified: read forces a downgrade
  uint64_t read_s() const { return n; }            // owner (home) Shared: node 2 read it first
  uint64_t write_miss() const { return 2 * n; }
  uint64_t upgrade() const { return 3 * n; }
  uint64_t inval(int k) const { return (3 + static_cast<uint64_t>(k)) * n; }  // k = 1..3
  uint64_t seq() const { return 7 * n; }
};

// Nodes 0 (home), 2 and 3 run in child processes, as on separate hosts: a node's page-table changes (write-protect,
// punch) then flush only its own process's TLBs, not the measuring process's.
[[noreturn]] void ChildNode(NodeId id, int in, int out, uint64_t pages, const Layout& L) {
  auto node_or = DsmNode::CreateWithOwnMemory(BenchNodeConfig(id), pages * kPageSize);
  if (!node_or.ok()) ::_exit(1);
  DsmNode& node = **node_or;
  WriteLine(out, std::to_string(node.port()));
  std::vector<std::string> ports;
  for (int i = 0; i < 4; ++i) ports.push_back(ReadLine(in));
  for (NodeId j = 0; j < id; ++j) {
    if (!node.Connect(DsmPeer{j, "127.0.0.1", static_cast<uint16_t>(std::stoi(ports[j]))}).ok()) ::_exit(1);
  }
  if (!node.WaitForPeers({0, 1, 2, 3}, absl::Seconds(20)).ok() && node.connected_peers().size() != 3) ::_exit(1);
  if (id == 0) {
    // The home wrote every page (as a guest would have): each fetch carries real data from a Modified owner.
    for (uint64_t p = 0; p < pages; ++p) *Word(node, p) = p;
  }
  WriteLine(out, "ready");
  if (ReadLine(in) != "read") ::_exit(1);
  // Become a sharer: node 2 of the owner-Shared range and of inval(1..3), node 3 of inval(2..3), node 0 of inval(3).
  auto read_range = [&](uint64_t first) {
    for (uint64_t i = 0; i < L.n; ++i) (void)*Word(node, first + i);
  };
  if (id == 2) {
    read_range(L.read_s());
    for (int k = 1; k <= 3; ++k) read_range(L.inval(k));
  }
  if (id == 3) read_range(L.inval(2)), read_range(L.inval(3));
  if (id == 0) read_range(L.inval(3));
  WriteLine(out, "ready");
  (void)ReadLine(in);  // stop
  node.Stop();
  ::_exit(0);
}

int Main(int samples, int throughput_pages) {
  const Layout L{static_cast<uint64_t>(samples)};
  const uint64_t pages = L.seq() + static_cast<uint64_t>(throughput_pages);
  // Fork the other nodes before this process has any thread.
  int to[4] = {-1, -1, -1, -1}, from[4] = {-1, -1, -1, -1};
  pid_t pids[4] = {0, 0, 0, 0};
  for (NodeId id : {0, 2, 3}) {
    int down[2], up[2];
    if (::pipe(down) < 0 || ::pipe(up) < 0) return 1;
    pids[id] = ::fork();
    if (pids[id] == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ChildNode(id, down[0], up[1], pages, L);
    }
    to[id] = down[1];
    from[id] = up[0];
  }
  std::string ports[4];
  for (NodeId id : {0, 2, 3}) ports[id] = ReadLine(from[id]);
  auto node_or = DsmNode::CreateWithOwnMemory(BenchNodeConfig(1), pages * kPageSize);
  if (!node_or.ok()) return 1;
  DsmNode& remote = **node_or;
  ports[1] = std::to_string(remote.port());
  for (NodeId id : {0, 2, 3}) {
    for (const auto& p : ports) WriteLine(to[id], p);
  }
  if (!remote.Connect(DsmPeer{0, "127.0.0.1", static_cast<uint16_t>(std::stoi(ports[0]))}).ok()) return 1;
  for (NodeId id : {0, 2, 3}) {
    if (ReadLine(from[id]) != "ready") return 1;
  }
  // Node 1 owns the invalidation ranges before the others read them.
  for (int k = 1; k <= 3; ++k) {
    for (uint64_t i = 0; i < L.n; ++i) *Word(remote, L.inval(k) + i) = 1;
  }
  for (NodeId id : {0, 2, 3}) WriteLine(to[id], "read");
  for (NodeId id : {0, 2, 3}) {
    if (ReadLine(from[id]) != "ready") return 1;
  }
  for (uint64_t i = 0; i < L.n; ++i) (void)*Word(remote, L.upgrade() + i);  // Shared copies to upgrade

  auto raw_or = RawPath::Create(static_cast<uint64_t>(samples + throughput_pages));
  if (!raw_or.ok()) {
    std::fprintf(stderr, "baseline: %s\n", raw_or.status().ToString().c_str());
    return 1;
  }
  RawPath& raw = **raw_or;
  std::vector<uint64_t> base_uffd, base_tcp, base_fault, owner_down, owner_hand, read_m, read_s, write, upgrade,
      inval[4];
  auto timed = [](auto&& f) {
    const uint64_t t0 = NowNs();
    f();
    return NowNs() - t0;
  };
  // Baseline and DSM samples alternate, so both see the same load on the machine.
  for (uint64_t i = 0; i < L.n; ++i) {
    base_fault.push_back(raw.FaultViaTcp());
    read_m.push_back(timed([&] { (void)*Word(remote, L.read_m() + i); }));
    read_s.push_back(timed([&] { (void)*Word(remote, L.read_s() + i); }));
    base_uffd.push_back(raw.UffdFault());
    base_tcp.push_back(raw.TcpRtt4k());
    owner_down.push_back(raw.OwnerDowngrade());
    owner_hand.push_back(raw.OwnerHandOver());
    write.push_back(timed([&] { *Word(remote, L.write_miss() + i) = 1; }));
    upgrade.push_back(timed([&] { *Word(remote, L.upgrade() + i) = 2; }));
    for (int k = 1; k <= 3; ++k) inval[k].push_back(timed([&] { *Word(remote, L.inval(k) + i) = 3; }));
  }
  // Sequential first touch, in alternating chunks of DSM and baseline pages.
  uint64_t dsm_ns = 0, base_ns = 0;
  const int chunk = std::max(1, throughput_pages / 8);
  for (int done = 0; done < throughput_pages; done += chunk) {
    const int count = std::min(chunk, throughput_pages - done);
    dsm_ns += timed([&] {
      for (int i = 0; i < count; ++i) (void)*Word(remote, L.seq() + static_cast<uint64_t>(done + i));
    });
    for (int i = 0; i < count; ++i) base_ns += raw.FaultViaTcp();
  }
  const double dsm_pps = throughput_pages / (static_cast<double>(dsm_ns) / 1e9);
  const double base_pps = throughput_pages / (static_cast<double>(base_ns) / 1e9);

  const Summary bu = Summarize(base_uffd), bt = Summarize(base_tcp), base = Summarize(base_fault);
  const Summary od = Summarize(owner_down), oh = Summarize(owner_hand);
  const Summary rm = Summarize(read_m), rs = Summarize(read_s), w = Summarize(write), u = Summarize(upgrade);
  const double read_ratio_with_owner_work = rm.median_us / (base.median_us + od.median_us);
  const double write_ratio_with_owner_work = w.median_us / (base.median_us + oh.median_us);
  std::printf("DSM fault latency, 4 nodes (separate processes), TCP loopback, %d samples each (median / p99, us)\n",
              samples);
  std::printf("  baseline: raw uffd fault %.1f / %.1f, raw TCP 4 KiB RTT %.1f / %.1f, fault fetched over TCP %.1f / %.1f\n",
              bu.median_us, bu.p99_us, bt.median_us, bt.p99_us, base.median_us, base.p99_us);
  std::printf("  read of Invalid page, owner Modified   %8.1f / %8.1f  ratio %.2f\n", rm.median_us, rm.p99_us,
              rm.median_us / base.median_us);
  std::printf("  read of Invalid page, owner Shared     %8.1f / %8.1f  ratio %.2f\n", rs.median_us, rs.p99_us,
              rs.median_us / base.median_us);
  std::printf("  write of Invalid page                  %8.1f / %8.1f  ratio %.2f\n", w.median_us, w.p99_us,
              w.median_us / base.median_us);
  std::printf("  upgrade Shared->Modified               %8.1f / %8.1f\n", u.median_us, u.p99_us);
  // What the owner's kernel must do first, which the raw path does not: the ratios with it added to the baseline
  // say how much of the gap is the protocol's own (engine, messages) and how much those system calls.
  std::printf("  the owner's kernel work: downgrade (write-protect, pread) %.1f / %.1f, hand-over (and punch) %.1f / "
              "%.1f\n", od.median_us, od.p99_us, oh.median_us, oh.p99_us);
  std::printf("  against baseline + that work: read owner Modified ratio %.2f, write ratio %.2f\n",
              read_ratio_with_owner_work, write_ratio_with_owner_work);
  std::string inval_json;
  for (int k = 1; k <= 3; ++k) {
    const Summary s = Summarize(inval[k]);
    std::printf("  upgrade invalidating %d sharer(s)       %8.1f / %8.1f\n", k, s.median_us, s.p99_us);
    absl::StrAppendFormat(&inval_json, ",\"invalidate_k%d_median_us\":%.1f,\"invalidate_k%d_p99_us\":%.1f", k,
                          s.median_us, k, s.p99_us);
  }
  std::printf("  sequential first touch: DSM %.0f pages/s, baseline %.0f pages/s (DSM/baseline %.2f)\n", dsm_pps,
              base_pps, dsm_pps / base_pps);
  std::fflush(stdout);
  std::fprintf(stderr, "%s", remote.FormatStats(3).c_str());
  for (NodeId id : {0, 2, 3}) WriteLine(to[id], "stop");
  remote.Stop();
  for (NodeId id : {0, 2, 3}) ::waitpid(pids[id], nullptr, 0);
  std::printf(
      "{\"name\":\"dsm_read_fault_latency\",\"value\":%.1f,\"unit\":\"us\",\"baseline\":%.1f,\"ratio\":%.3f,"
      "\"read_p99_us\":%.1f,\"baseline_p99_us\":%.1f,\"read_owner_shared_median_us\":%.1f,"
      "\"read_owner_shared_p99_us\":%.1f,\"baseline_uffd_us\":%.1f,\"baseline_tcp_rtt_4k_us\":%.1f,"
      "\"write_median_us\":%.1f,\"write_p99_us\":%.1f,\"upgrade_median_us\":%.1f,\"upgrade_p99_us\":%.1f%s,"
      "\"owner_downgrade_us\":%.1f,\"owner_handover_us\":%.1f,\"read_ratio_with_owner_work\":%.3f,"
      "\"write_ratio\":%.3f,\"write_ratio_with_owner_work\":%.3f,"
      "\"first_touch_pages_per_sec\":%.0f,\"baseline_first_touch_pages_per_sec\":%.0f,\"samples\":%d}\n",
      rm.median_us, base.median_us, rm.median_us / base.median_us, rm.p99_us, base.p99_us, rs.median_us, rs.p99_us,
      bu.median_us, bt.median_us, w.median_us, w.p99_us, u.median_us, u.p99_us, inval_json.c_str(), od.median_us,
      oh.median_us, read_ratio_with_owner_work, w.median_us / base.median_us, write_ratio_with_owner_work, dsm_pps,
      base_pps, samples);
  return 0;
}

}  // namespace
}  // namespace coalesce::dsm::bench

int main(int argc, char** argv) {
  const int samples = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int pages = argc > 2 ? std::atoi(argv[2]) : 4096;
  return coalesce::dsm::bench::Main(samples > 0 ? samples : 1000, pages > 0 ? pages : 4096);
}
