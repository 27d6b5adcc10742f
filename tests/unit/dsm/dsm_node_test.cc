// Real DSM nodes (userfaultfd + TCP loopback), several in one process, each with its own memfd and mapping.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "dsm/dsm_node.h"

namespace coalesce::dsm {
namespace {

constexpr uint64_t kSize = 64 * kPageSize;

struct ErrorSink {
  std::atomic<int> count{0};
  absl::Mutex mu;
  absl::Status first ABSL_GUARDED_BY(mu);
  std::function<void(const absl::Status&)> Callback() {
    return [this](const absl::Status& s) {
      absl::MutexLock l(&mu);
      if (first.ok()) first = s;
      ++count;
    };
  }
};

DsmNodeConfig Config(NodeId self, ErrorSink* errors) {
  DsmNodeConfig c;
  c.self = self;
  c.listen_address = "127.0.0.1";
  c.request_timeout = absl::Seconds(3);
  c.peer_timeout = absl::Seconds(2);
  c.on_error = errors->Callback();
  return c;
}

std::vector<std::unique_ptr<DsmNode>> MakeCluster(int n, ErrorSink* errors) {
  std::vector<std::unique_ptr<DsmNode>> nodes;
  for (int i = 0; i < n; ++i) {
    auto node = DsmNode::CreateWithOwnMemory(Config(static_cast<NodeId>(i), errors), kSize);
    REQUIRE(node.ok());
    nodes.push_back(std::move(*node));
  }
  for (int i = 1; i < n; ++i) {
    for (int j = 0; j < i; ++j) {
      REQUIRE(nodes[i]->Connect(DsmPeer{static_cast<NodeId>(j), "127.0.0.1", nodes[j]->port()}).ok());
    }
  }
  for (int i = 0; i < n; ++i) {
    std::vector<NodeId> others;
    for (int j = 0; j < n; ++j) {
      if (j != i) others.push_back(static_cast<NodeId>(j));
    }
    REQUIRE(nodes[i]->WaitForPeers(others, absl::Seconds(5)).ok());
  }
  return nodes;
}

TEST_CASE("a write on one node is read on another; ownership moves", "[dsm][node]") {
  ErrorSink errors;
  auto nodes = MakeCluster(2, &errors);
  volatile uint64_t* a = reinterpret_cast<uint64_t*>(nodes[0]->data() + 3 * kPageSize);
  volatile uint64_t* b = reinterpret_cast<uint64_t*>(nodes[1]->data() + 3 * kPageSize);
  *a = 0x1122334455667788ULL;
  REQUIRE(*b == 0x1122334455667788ULL);  // read miss: Shared copy
  REQUIRE(nodes[1]->page_state(3) == PageState::kShared);
  REQUIRE(nodes[0]->page_state(3) == PageState::kShared);
  *b = 42;  // upgrade
  REQUIRE(nodes[1]->page_state(3) == PageState::kModified);
  REQUIRE(nodes[0]->page_state(3) == PageState::kInvalid);
  REQUIRE(*a == 42);
  b[1] = 7;  // write miss on node 1 after the home read it back
  REQUIRE(a[1] == 7);
  // An untouched page reads as zeros everywhere.
  REQUIRE(reinterpret_cast<volatile uint64_t*>(nodes[1]->data())[100] == 0);
  const auto& st = nodes[1]->stats();
  REQUIRE(st.faults[static_cast<int>(FaultKind::kReadMiss)].load() >= 2);
  REQUIRE(st.faults[static_cast<int>(FaultKind::kUpgrade)].load() >= 1);
  REQUIRE(st.fault_latency[static_cast<int>(FaultKind::kReadMiss)].count() >= 2);
  REQUIRE(nodes[1]->FormatStats().find("read_miss") != std::string::npos);
  REQUIRE(nodes[1]->HotPages(1).at(0).page == 3);
  REQUIRE(errors.count == 0);
}

TEST_CASE("spinlock counter across three in-process nodes is exact", "[dsm][node]") {
  ErrorSink errors;
  auto nodes = MakeCluster(3, &errors);
  constexpr int kIncrements = 300;
  std::vector<std::thread> threads;
  for (auto& n : nodes) {
    threads.emplace_back([&n] {
      auto* lock = reinterpret_cast<std::atomic<uint32_t>*>(n->data() + 5 * kPageSize);
      auto* counter = reinterpret_cast<volatile uint64_t*>(n->data() + 6 * kPageSize);
      for (int i = 0; i < kIncrements; ++i) {
        while (lock->exchange(1, std::memory_order_acquire) != 0) {
          while (lock->load(std::memory_order_relaxed) != 0) {
          }
        }
        *counter = *counter + 1;
        lock->store(0, std::memory_order_release);
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(*reinterpret_cast<volatile uint64_t*>(nodes[2]->data() + 6 * kPageSize) == 3 * kIncrements);
  REQUIRE(errors.count == 0);
}

TEST_CASE("a node joining later sees every write; a leaving node hands its pages back", "[dsm][node]") {
  ErrorSink errors;
  auto nodes = MakeCluster(2, &errors);
  for (int p = 0; p < 8; ++p) reinterpret_cast<volatile uint64_t*>(nodes[1]->data() + p * kPageSize)[0] = 100 + p;
  auto late = DsmNode::CreateWithOwnMemory(Config(2, &errors), kSize);
  REQUIRE(late.ok());
  for (NodeId j : {0, 1}) REQUIRE((*late)->Connect(DsmPeer{j, "127.0.0.1", nodes[j]->port()}).ok());
  for (int p = 0; p < 8; ++p) {
    REQUIRE((*late)->page_state(p) == PageState::kInvalid);
    REQUIRE(reinterpret_cast<volatile uint64_t*>((*late)->data() + p * kPageSize)[0] == 100u + p);
  }
  // Node 1 owns pages 0..7 (Modified or Shared); it leaves and the home takes them back.
  REQUIRE(nodes[1]->Leave(absl::Seconds(3)).ok());
  for (int p = 0; p < 8; ++p) {
    reinterpret_cast<volatile uint64_t*>((*late)->data() + p * kPageSize)[1] = 7;
    REQUIRE(reinterpret_cast<volatile uint64_t*>(nodes[0]->data() + p * kPageSize)[0] == 100u + p);
    REQUIRE(reinterpret_cast<volatile uint64_t*>(nodes[0]->data() + p * kPageSize)[1] == 7u);
  }
  REQUIRE(errors.count == 0);
  (*late)->Stop();
}

TEST_CASE("a home over its memory allowance spills to a memory node; a leaving memory node gives every page back",
          "[dsm][node][spill]") {
  ErrorSink errors;
  auto nodes = MakeCluster(2, &errors);  // 64 pages; node 1 lends memory and runs nothing
  constexpr uint64_t kAllowance = 16;
  // Without an allowance the spill thread sleeps until one is set (it used to look every 2 ms).
  absl::SleepFor(absl::Milliseconds(200));
  CHECK(nodes[0]->stats().spill_rounds.load() == 0);
  nodes[0]->SetMemoryNode(1, 64);
  nodes[0]->SetMemoryAllowance(kAllowance);
  auto* mem = reinterpret_cast<volatile uint64_t*>(nodes[0]->data());
  constexpr uint64_t kWords = kPageSize / sizeof(uint64_t);
  for (int pass = 0; pass < 3; ++pass) {
    for (uint64_t p = 0; p < 64; ++p) mem[p * kWords + static_cast<uint64_t>(pass)] = p * 1000 + static_cast<uint64_t>(pass);
  }
  uint64_t wrong = 0;
  for (uint64_t p = 0; p < 64; ++p) {
    for (uint64_t pass = 0; pass < 3; ++pass) wrong += mem[p * kWords + pass] != p * 1000 + pass;
  }
  CHECK(wrong == 0);
  // The faults that take home over its allowance wake the spill thread, which catches up.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (nodes[0]->resident_pages() > kAllowance && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  CHECK(nodes[0]->resident_pages() <= kAllowance);
  // Under the allowance and idle, it looks once per 100 ms, not every 2 ms (250 times in this half second).
  const uint64_t rounds = nodes[0]->stats().spill_rounds.load();
  absl::SleepFor(absl::Milliseconds(500));
  CHECK(nodes[0]->stats().spill_rounds.load() - rounds <= 25);
  CHECK(nodes[0]->stats().pages_spilled.load() >= 64 - kAllowance);
  CHECK(nodes[1]->stats().pages_taken_in.load() >= 64 - kAllowance);
  const std::vector<uint64_t> owned = nodes[0]->OwnedPagesPerNode();
  CHECK(owned[1] >= 64 - kAllowance);
  CHECK(owned[0] + owned[1] == 64);

  // The memory node leaves: its pages come home, every word intact.
  nodes[0]->RemoveMemoryNode(1);
  REQUIRE(nodes[1]->Leave(absl::Seconds(5)).ok());
  CHECK(nodes[0]->OwnedPagesPerNode()[0] == 64);
  wrong = 0;
  for (uint64_t p = 0; p < 64; ++p) {
    for (uint64_t pass = 0; pass < 3; ++pass) wrong += mem[p * kWords + pass] != p * 1000 + pass;
  }
  CHECK(wrong == 0);
  CHECK(errors.count.load() == 0);
}

TEST_CASE("bulk user messages flow on their own lane", "[dsm][node]") {
  ErrorSink errors;
  auto nodes = MakeCluster(2, &errors);
  std::atomic<int> got{0};
  // Not configured with a callback: received and dropped; the counters still show them.
  for (int i = 0; i < 50; ++i) REQUIRE(nodes[1]->SendUserMessage(0, std::vector<uint8_t>(8192, 1)).ok());
  volatile uint64_t* b = reinterpret_cast<uint64_t*>(nodes[1]->data());
  b[0] = 1;
  REQUIRE(reinterpret_cast<volatile uint64_t*>(nodes[0]->data())[0] == 1);
  REQUIRE(nodes[1]->stats().bulk_messages_sent.load() == 50);
  REQUIRE(errors.count == 0);
  (void)got;
}

TEST_CASE("link emulation delays page traffic by the configured one-way latency", "[dsm][node]") {
  ErrorSink errors;
  std::vector<std::unique_ptr<DsmNode>> nodes;
  for (NodeId id : {0, 1}) {
    auto cfg = Config(id, &errors);
    cfg.link.one_way_latency = absl::Milliseconds(5);
    cfg.link.jitter = absl::Milliseconds(1);
    auto node = DsmNode::CreateWithOwnMemory(cfg, kSize);
    REQUIRE(node.ok());
    nodes.push_back(std::move(*node));
  }
  REQUIRE(nodes[1]->Connect(DsmPeer{0, "127.0.0.1", nodes[0]->port()}).ok());
  reinterpret_cast<volatile uint64_t*>(nodes[0]->data())[0] = 9;
  const absl::Time start = absl::Now();
  REQUIRE(reinterpret_cast<volatile uint64_t*>(nodes[1]->data())[0] == 9);  // READ_REQ + PAGE_DATA: two links
  const absl::Duration took = absl::Now() - start;
  INFO(absl::FormatDuration(took));
  REQUIRE(took >= absl::Milliseconds(10));
  REQUIRE(took < absl::Seconds(1));
  REQUIRE(errors.count == 0);
}

TEST_CASE("a silent peer is reported within the peer timeout", "[dsm][node]") {
  ErrorSink errors;
  auto cfg = Config(0, &errors);
  cfg.peer_timeout = absl::Milliseconds(500);
  auto node = DsmNode::CreateWithOwnMemory(cfg, kSize);
  REQUIRE(node.ok());
  // A peer that completes the handshake and then says nothing, not even heartbeats.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons((*node)->port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  WireHeader hello = MakeHeader(MsgType::kHello, 1, 0, kSize / kPageSize, 0, 0, kPageSize);
  REQUIRE(::send(fd, &hello, sizeof(hello), 0) == sizeof(hello));
  const absl::Time start = absl::Now();
  while (errors.count == 0 && absl::Now() - start < absl::Seconds(5)) absl::SleepFor(absl::Milliseconds(10));
  const absl::Duration took = absl::Now() - start;
  REQUIRE(errors.count == 1);
  REQUIRE(took < absl::Seconds(2));
  {
    absl::MutexLock l(&errors.mu);
    INFO(errors.first.ToString());
    REQUIRE(errors.first.message().find("node 1") != absl::string_view::npos);
  }
  REQUIRE_FALSE((*node)->health().ok());
  ::close(fd);
}

TEST_CASE("a page request to a dead manager fails within the request timeout", "[dsm][node]") {
  ErrorSink errors;
  auto cfg0 = Config(0, &errors);
  auto cfg1 = Config(1, &errors);
  cfg1.request_timeout = absl::Milliseconds(400);
  cfg1.peer_timeout = absl::Seconds(30);  // only the request deadline can fire
  // Node 0 is only a raw socket that handshakes and then ignores everything but answers heartbeats never.
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(::listen(lfd, 1) == 0);
  socklen_t len = sizeof(a);
  REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  std::thread fake([lfd] {
    int c = ::accept(lfd, nullptr, nullptr);
    WireHeader h;
    REQUIRE(::recv(c, &h, sizeof(h), MSG_WAITALL) == sizeof(h));
    WireHeader hello = MakeHeader(MsgType::kHello, 0, 0, kSize / kPageSize, 0, 0, kPageSize);
    REQUIRE(::send(c, &hello, sizeof(hello), 0) == sizeof(hello));
    char buf[4096];
    while (::recv(c, buf, sizeof(buf), 0) > 0) {
    }
    ::close(c);
  });
  auto node = DsmNode::CreateWithOwnMemory(cfg1, kSize);
  REQUIRE(node.ok());
  REQUIRE((*node)->Connect(DsmPeer{0, "127.0.0.1", ntohs(a.sin_port)}).ok());
  std::thread reader([&] {
    // Blocks on the fault until the node gives up and releases the memory at Stop().
    (void)reinterpret_cast<volatile uint64_t*>((*node)->data())[0];
  });
  const absl::Time start = absl::Now();
  while (errors.count == 0 && absl::Now() - start < absl::Seconds(5)) absl::SleepFor(absl::Milliseconds(10));
  REQUIRE(errors.count == 1);
  REQUIRE(absl::Now() - start < absl::Seconds(2));
  {
    absl::MutexLock l(&errors.mu);
    REQUIRE(absl::IsDeadlineExceeded(errors.first));
  }
  (*node)->Stop();  // releases the blocked reader
  reader.join();
  fake.join();
  ::close(lfd);
  (void)cfg0;
}

}  // namespace
}  // namespace coalesce::dsm
