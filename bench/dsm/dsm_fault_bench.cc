// DSM fault latency and first-touch throughput against the raw baseline measured in the same run.
//   read of an Invalid page, write of an Invalid page, upgrade Shared -> Modified, invalidation of a page held by
//   k = 1, 2, 3 sharers (the home upgrades while k other nodes hold copies), sequential first touch (pages/s).
// Nodes are DsmNodes in this process, each with its own memfd, over TCP loopback: the same path as the baseline.
// The last line printed is one JSON object (the read fault, the goal: ratio <= 1.3).
// Usage: dsm_fault_bench [samples=1000] [throughput_pages=4096]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/dsm/raw_baseline.h"
#include "dsm/dsm_node.h"

namespace coalesce::dsm::bench {
namespace {

uint64_t NowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

struct Summary {
  double median_us = 0, p99_us = 0;
};

Summary Summarize(std::vector<uint64_t> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))] / 1e3; };
  return Summary{at(0.5), at(0.99)};
}

volatile uint64_t* Word(DsmNode& n, uint64_t page) {
  return reinterpret_cast<volatile uint64_t*>(n.data() + page * kPageSize);
}

int Main(int samples, int throughput_pages) {
  auto raw_or = RawPath::Create(static_cast<uint64_t>(samples + throughput_pages));
  if (!raw_or.ok()) {
    std::fprintf(stderr, "baseline: %s\n", raw_or.status().ToString().c_str());
    return 1;
  }
  RawPath& raw = **raw_or;
  std::vector<uint64_t> base_uffd, base_tcp, base_fault;
  // Page ranges: one fresh page per sample and per measurement.
  const uint64_t n = static_cast<uint64_t>(samples);
  const uint64_t read_base = 0, write_base = n, upgrade_base = 2 * n, inval_base = 3 * n;  // + k * n
  const uint64_t seq_base = 6 * n;
  const uint64_t pages = seq_base + static_cast<uint64_t>(throughput_pages);
  std::vector<std::unique_ptr<DsmNode>> nodes;
  for (NodeId id = 0; id < 4; ++id) {
    DsmNodeConfig c;
    c.self = id;
    c.listen_address = "127.0.0.1";
    c.on_error = [](const absl::Status& s) {
      std::fprintf(stderr, "DSM error: %s\n", s.ToString().c_str());
      std::exit(1);
    };
    auto node = DsmNode::CreateWithOwnMemory(c, pages * kPageSize);
    if (!node.ok()) {
      std::fprintf(stderr, "%s\n", node.status().ToString().c_str());
      return 1;
    }
    for (NodeId j = 0; j < id; ++j) {
      if (auto s = (*node)->Connect(DsmPeer{j, "127.0.0.1", nodes[j]->port()}); !s.ok()) return 1;
    }
    nodes.push_back(std::move(*node));
  }
  DsmNode& home = *nodes[0];
  DsmNode& remote = *nodes[1];
  // The home touches every page first, so each fetch carries real data (not a never-touched zero page).
  for (uint64_t p = 0; p < pages; ++p) *Word(home, p) = p;

  std::vector<uint64_t> read, write, upgrade, inval[4];
  // Baseline and DSM samples alternate, so both see the same load on the machine.
  for (uint64_t i = 0; i < n; ++i) {
    base_fault.push_back(raw.FaultViaTcp());
    const uint64_t t0 = NowNs();
    (void)*Word(remote, read_base + i);
    read.push_back(NowNs() - t0);
    base_uffd.push_back(raw.UffdFault());
    base_tcp.push_back(raw.TcpRtt4k());
  }
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t t0 = NowNs();
    *Word(remote, write_base + i) = 1;
    write.push_back(NowNs() - t0);
  }
  for (uint64_t i = 0; i < n; ++i) {
    (void)*Word(remote, upgrade_base + i);
    const uint64_t t0 = NowNs();
    *Word(remote, upgrade_base + i) = 2;
    upgrade.push_back(NowNs() - t0);
  }
  for (int k = 1; k <= 3; ++k) {
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t p = inval_base + static_cast<uint64_t>(k - 1) * n + i;
      for (int s = 1; s <= k; ++s) (void)*Word(*nodes[s], p);
      const uint64_t t0 = NowNs();
      *Word(home, p) = 3;  // home owns it Shared: upgrade with k invalidations
      inval[k].push_back(NowNs() - t0);
    }
  }
  // Sequential first touch, in alternating chunks of DSM and baseline pages.
  uint64_t dsm_ns = 0, base_ns = 0;
  const int chunk = std::max(1, throughput_pages / 8);
  for (int done = 0; done < throughput_pages; done += chunk) {
    const int count = std::min(chunk, throughput_pages - done);
    uint64_t t0 = NowNs();
    for (int i = 0; i < count; ++i) (void)*Word(remote, seq_base + static_cast<uint64_t>(done + i));
    dsm_ns += NowNs() - t0;
    for (int i = 0; i < count; ++i) base_ns += raw.FaultViaTcp();
  }
  const double dsm_pps = throughput_pages / (dsm_ns / 1e9);
  const double base_pps = throughput_pages / (base_ns / 1e9);

  const Summary base_uffd_s = Summarize(base_uffd), base_tcp_s = Summarize(base_tcp), base = Summarize(base_fault);
  const Summary r = Summarize(read), w = Summarize(write), u = Summarize(upgrade);
  std::printf("DSM fault latency, %d samples each, TCP loopback (median / p99, us)\n", samples);
  std::printf("  baseline: raw uffd fault %.1f / %.1f, raw TCP 4 KiB RTT %.1f / %.1f, fault fetched over TCP %.1f / %.1f\n",
              base_uffd_s.median_us, base_uffd_s.p99_us, base_tcp_s.median_us, base_tcp_s.p99_us, base.median_us,
              base.p99_us);
  std::printf("  read of Invalid page      %8.1f / %8.1f  ratio %.2f\n", r.median_us, r.p99_us, r.median_us / base.median_us);
  std::printf("  write of Invalid page     %8.1f / %8.1f  ratio %.2f\n", w.median_us, w.p99_us, w.median_us / base.median_us);
  std::printf("  upgrade Shared->Modified  %8.1f / %8.1f\n", u.median_us, u.p99_us);
  std::string inval_json;
  for (int k = 1; k <= 3; ++k) {
    const Summary s = Summarize(inval[k]);
    std::printf("  invalidate %d sharer(s)    %8.1f / %8.1f\n", k, s.median_us, s.p99_us);
    absl::StrAppendFormat(&inval_json, ",\"invalidate_k%d_median_us\":%.1f,\"invalidate_k%d_p99_us\":%.1f", k,
                          s.median_us, k, s.p99_us);
  }
  std::printf("  sequential first touch: DSM %.0f pages/s, baseline %.0f pages/s (ratio %.2f)\n", dsm_pps,
              base_pps, base_pps / dsm_pps);
  std::fflush(stdout);
  std::fprintf(stderr, "%s", remote.FormatStats(3).c_str());
  std::printf(
      "{\"name\":\"dsm_read_fault_latency\",\"value\":%.1f,\"unit\":\"us\",\"baseline\":%.1f,\"ratio\":%.3f,"
      "\"read_p99_us\":%.1f,\"baseline_p99_us\":%.1f,\"baseline_uffd_us\":%.1f,\"baseline_tcp_rtt_4k_us\":%.1f,"
      "\"write_median_us\":%.1f,\"write_p99_us\":%.1f,\"upgrade_median_us\":%.1f,\"upgrade_p99_us\":%.1f%s,"
      "\"first_touch_pages_per_sec\":%.0f,\"baseline_first_touch_pages_per_sec\":%.0f,\"samples\":%d}\n",
      r.median_us, base.median_us, r.median_us / base.median_us, r.p99_us, base.p99_us, base_uffd_s.median_us,
      base_tcp_s.median_us, w.median_us, w.p99_us, u.median_us, u.p99_us, inval_json.c_str(), dsm_pps,
      base_pps, samples);
  for (auto& node : nodes) node->Stop();
  return 0;
}

}  // namespace
}  // namespace coalesce::dsm::bench

int main(int argc, char** argv) {
  const int samples = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int pages = argc > 2 ? std::atoi(argv[2]) : 4096;
  return coalesce::dsm::bench::Main(samples > 0 ? samples : 1000, pages > 0 ? pages : 4096);
}
