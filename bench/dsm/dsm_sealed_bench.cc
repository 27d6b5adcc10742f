// What sealing the data plane costs: DSM faults over an encrypted and authenticated link (AES-256-GCM per frame,
// dsm/frame_cipher.h) against the same faults over a plaintext link, in the same run, samples alternating so both
// see the same machine load. Two node pairs over TCP loopback: each home (node 0, every page Modified with known
// contents) in its own child process, both nodes 1 in this process, which takes every sample and checks every
// fetched page's contents.
// Usage: dsm_sealed_bench [samples=2000] [throughput_pages=4096]
// The last line printed is one JSON object: the read fault of an Invalid page, sealed against plaintext (issue 14's
// goal: ratio <= 1.10).
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/dsm/bench_support.h"
#include "dsm/dsm_node.h"

namespace coalesce::dsm::bench {
namespace {

struct Home {
  pid_t pid = 0;
  int to = -1, from = -1;
};

[[noreturn]] void RunHome(const std::optional<DataPlaneSecret>& secret, int in, int out, uint64_t pages) {
  DsmNodeConfig cfg = BenchNodeConfig(0);
  cfg.data_plane_secret = secret;
  auto node_or = DsmNode::CreateWithOwnMemory(cfg, pages * kPageSize);
  if (!node_or.ok()) ::_exit(1);
  DsmNode& node = **node_or;
  for (uint64_t p = 0; p < pages; ++p) *Word(node, p) = p * 3 + 1;
  WriteLine(out, std::to_string(node.port()));
  (void)ReadLine(in);  // stop
  node.Stop();
  ::_exit(0);
}

Home ForkHome(const std::optional<DataPlaneSecret>& secret, uint64_t pages) {
  int down[2], up[2];
  if (::pipe(down) < 0 || ::pipe(up) < 0) std::exit(1);
  Home h;
  h.pid = ::fork();
  if (h.pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    RunHome(secret, down[0], up[1], pages);
  }
  h.to = down[1];
  h.from = up[0];
  return h;
}

std::unique_ptr<DsmNode> Remote(const std::optional<DataPlaneSecret>& secret, uint64_t pages, const Home& home) {
  const std::string port = ReadLine(home.from);
  DsmNodeConfig cfg = BenchNodeConfig(1);
  cfg.data_plane_secret = secret;
  auto node = DsmNode::CreateWithOwnMemory(cfg, pages * kPageSize);
  if (!node.ok() || port.empty() ||
      !(*node)->Connect(DsmPeer{0, "127.0.0.1", static_cast<uint16_t>(std::stoi(port))}).ok()) {
    std::fprintf(stderr, "cannot start node 1 (%s)\n", secret ? "sealed" : "plaintext");
    std::exit(1);
  }
  return *std::move(node);
}

int Main(int samples, int throughput_pages) {
  const uint64_t n = static_cast<uint64_t>(samples);
  // Read samples take every other page: a sequential sweep would be served by read-ahead (docs/DSM.md), and this
  // measures one fault's round trip.
  const uint64_t read_first = 0, write_first = 2 * n, seq_first = 3 * n;
  const uint64_t pages = seq_first + static_cast<uint64_t>(throughput_pages);
  auto secret = DataPlaneSecret::Generate();
  if (!secret.ok()) {
    std::fprintf(stderr, "%s\n", secret.status().ToString().c_str());
    return 1;
  }
  // Fork both homes before this process has any thread.
  const Home plain_home = ForkHome(std::nullopt, pages);
  const Home sealed_home = ForkHome(*secret, pages);
  auto plain = Remote(std::nullopt, pages, plain_home);
  auto sealed = Remote(*secret, pages, sealed_home);

  auto timed = [](auto&& f) {
    const uint64_t t0 = NowNs();
    f();
    return NowNs() - t0;
  };
  std::vector<uint64_t> read_plain, read_sealed, write_plain, write_sealed;
  uint64_t wrong = 0;
  std::fprintf(stderr, "sampling %d faults of each kind on each link\n", samples);
  for (uint64_t i = 0; i < n; ++i) {
    // Alternate which link goes first, so neither always runs with warmer caches.
    DsmNode* first = (i % 2 == 0) ? plain.get() : sealed.get();
    DsmNode* second = (i % 2 == 0) ? sealed.get() : plain.get();
    for (DsmNode* node : {first, second}) {
      uint64_t v = 0;
      const uint64_t ns = timed([&] { v = *Word(*node, read_first + 2 * i); });
      (node == plain.get() ? read_plain : read_sealed).push_back(ns);
      if (v != (read_first + 2 * i) * 3 + 1) ++wrong;
    }
    for (DsmNode* node : {second, first}) {
      const uint64_t ns = timed([&] { *Word(*node, write_first + i) = 7; });
      (node == plain.get() ? write_plain : write_sealed).push_back(ns);
    }
    if ((i + 1) % (n / 4 == 0 ? 1 : n / 4) == 0) std::fprintf(stderr, "  %lu/%lu\n", i + 1, n);
  }
  uint64_t plain_ns = 0, sealed_ns = 0;
  const int chunk = std::max(1, throughput_pages / 8);
  for (int done = 0; done < throughput_pages; done += chunk) {
    const int count = std::min(chunk, throughput_pages - done);
    for (DsmNode* node : {plain.get(), sealed.get()}) {
      const uint64_t ns = timed([&] {
        for (int k = 0; k < count; ++k) (void)*Word(*node, seq_first + static_cast<uint64_t>(done + k));
      });
      (node == plain.get() ? plain_ns : sealed_ns) += ns;
    }
  }
  const double plain_pps = throughput_pages / (static_cast<double>(plain_ns) / 1e9);
  const double sealed_pps = throughput_pages / (static_cast<double>(sealed_ns) / 1e9);
  const Summary rp = Summarize(read_plain), rs = Summarize(read_sealed);
  const Summary wp = Summarize(write_plain), ws = Summarize(write_sealed);
  std::printf("DSM faults, sealed (AES-256-GCM) vs plaintext data plane, 2 nodes, TCP loopback, %d samples each "
              "(median / p99, us)\n", samples);
  std::printf("  read of Invalid page   plaintext %7.1f / %7.1f   sealed %7.1f / %7.1f   ratio %.3f\n",
              rp.median_us, rp.p99_us, rs.median_us, rs.p99_us, rs.median_us / rp.median_us);
  std::printf("  write of Invalid page  plaintext %7.1f / %7.1f   sealed %7.1f / %7.1f   ratio %.3f\n",
              wp.median_us, wp.p99_us, ws.median_us, ws.p99_us, ws.median_us / wp.median_us);
  std::printf("  sequential first touch plaintext %.0f pages/s, sealed %.0f pages/s (sealed/plaintext %.3f)\n",
              plain_pps, sealed_pps, sealed_pps / plain_pps);
  std::printf("  pages with wrong contents: %lu\n", wrong);
  std::fflush(stdout);
  for (const Home& h : {plain_home, sealed_home}) WriteLine(h.to, "stop");
  plain->Stop();
  sealed->Stop();
  for (const Home& h : {plain_home, sealed_home}) ::waitpid(h.pid, nullptr, 0);
  std::printf(
      "{\"name\":\"dsm_sealed_read_fault_latency\",\"value\":%.1f,\"unit\":\"us\",\"baseline\":%.1f,\"ratio\":%.3f,"
      "\"goal_ratio\":1.10,\"sealed_read_p99_us\":%.1f,\"plaintext_read_p99_us\":%.1f,"
      "\"sealed_write_median_us\":%.1f,\"plaintext_write_median_us\":%.1f,\"write_ratio\":%.3f,"
      "\"sealed_first_touch_pages_per_sec\":%.0f,\"plaintext_first_touch_pages_per_sec\":%.0f,"
      "\"wrong_pages\":%lu,\"samples\":%d}\n",
      rs.median_us, rp.median_us, rs.median_us / rp.median_us, rs.p99_us, rp.p99_us, ws.median_us, wp.median_us,
      ws.median_us / wp.median_us, sealed_pps, plain_pps, wrong, samples);
  return wrong == 0 ? 0 : 1;
}

}  // namespace
}  // namespace coalesce::dsm::bench

int main(int argc, char** argv) {
  const int samples = argc > 1 ? std::atoi(argv[1]) : 2000;
  const int pages = argc > 2 ? std::atoi(argv[2]) : 4096;
  return coalesce::dsm::bench::Main(samples > 0 ? samples : 2000, pages > 0 ? pages : 4096);
}
