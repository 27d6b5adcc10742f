// The data plane over real TCP loopback: handshake, both lanes, malformed and truncated input, and that fault
// messages overtake a bulk backlog.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "dsm/transport.h"

namespace coalesce::dsm {
namespace {

struct Inbox {
  absl::Mutex mu;
  std::vector<Message> got ABSL_GUARDED_BY(mu);
  std::vector<std::pair<NodeId, absl::Status>> closed ABSL_GUARDED_BY(mu);

  Transport::Callbacks Callbacks() {
    Transport::Callbacks cb;
    cb.on_message = [this](NodeId, Message m) {
      absl::MutexLock l(&mu);
      got.push_back(std::move(m));
    };
    cb.on_closed = [this](NodeId p, const absl::Status& s) {
      absl::MutexLock l(&mu);
      closed.emplace_back(p, s);
    };
    return cb;
  }
  bool WaitFor(size_t messages, size_t closes, absl::Duration timeout = absl::Seconds(5)) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      {
        absl::MutexLock l(&mu);
        if (got.size() >= messages && closed.size() >= closes) return true;
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
    return false;
  }
};

int RawConnect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  return fd;
}

void RawSend(int fd, const void* p, size_t n) { REQUIRE(::send(fd, p, n, MSG_NOSIGNAL) == static_cast<ssize_t>(n)); }

// Connects as node `id` and completes the handshake.
int RawPeer(uint16_t port, NodeId id, uint32_t pages) {
  int fd = RawConnect(port);
  WireHeader hello = MakeHeader(MsgType::kHello, id, 0, pages, 0, 0, kPageSize);
  RawSend(fd, &hello, sizeof(hello));
  WireHeader reply;
  REQUIRE(::recv(fd, &reply, sizeof(reply), MSG_WAITALL) == sizeof(reply));
  REQUIRE(reply.type == static_cast<uint8_t>(MsgType::kHello));
  return fd;
}

Transport::Options Opts(NodeId self) {
  Transport::Options o;
  o.self = self;
  o.num_pages = 16;
  o.listen_address = "127.0.0.1";
  o.io_timeout = absl::Seconds(2);
  return o;
}

// Nodes 0 and 1 with these options, node 1 connected to node 0 and both sides up.
struct ConnectedPair {
  std::unique_ptr<Transport> t0, t1;
};
ConnectedPair Connect(const Transport::Options& o0, const Transport::Options& o1, DsmStats* stats, Inbox& in0,
                      Inbox& in1) {
  auto t0 = Transport::Create(o0, stats, in0.Callbacks());
  auto t1 = Transport::Create(o1, stats, in1.Callbacks());
  REQUIRE(t0.ok());
  REQUIRE(t1.ok());
  REQUIRE((*t1)->Connect(0, "127.0.0.1", (*t0)->port(), absl::Seconds(2)).ok());
  REQUIRE((*t0)->WaitForPeers({1}, absl::Seconds(2)).ok());
  return {*std::move(t0), *std::move(t1)};
}

TEST_CASE("two transports exchange page messages with raw payloads", "[dsm][transport]") {
  DsmStats stats(16);
  Inbox in0, in1;
  auto [t0, t1] = Connect(Opts(0), Opts(1), &stats, in0, in1);
  Message m;
  m.type = MsgType::kPageData;
  m.page = 5;
  m.seq = 77;
  m.flags = kFlagGrantModified;
  m.payload.assign(kPageSize, 0xAB);
  m.payload[4095] = 0x11;
  REQUIRE(t0->Send(1, m).ok());
  REQUIRE(in1.WaitFor(1, 0));
  {
    absl::MutexLock l(&in1.mu);
    const Message& r = in1.got[0];
    REQUIRE(r.type == MsgType::kPageData);
    REQUIRE(r.src == 0);
    REQUIRE(r.page == 5);
    REQUIRE(r.seq == 77);
    REQUIRE(r.flags == kFlagGrantModified);
    REQUIRE(r.payload == m.payload);
  }
  Message u;
  u.type = MsgType::kUser;
  u.payload.assign(kMaxBulkPayload + 1, 1);
  REQUIRE_FALSE(t1->Send(0, u, Lane::kBulk).ok());
  u.payload.resize(1000);
  REQUIRE(t1->Send(0, u, Lane::kBulk).ok());
  REQUIRE(in0.WaitFor(1, 0));
  // The same id connecting twice is refused.
  REQUIRE_FALSE(t1->Connect(0, "127.0.0.1", t0->port(), absl::Seconds(1)).ok());
}

TEST_CASE("malformed, truncated and mismatched input closes only that connection", "[dsm][transport]") {
  DsmStats stats(16);
  Inbox in;
  auto t = Transport::Create(Opts(0), &stats, in.Callbacks());
  REQUIRE(t.ok());
  const uint16_t port = (*t)->port();

  SECTION("bad magic") {
    int fd = RawPeer(port, 1, 16);
    WireHeader h = MakeHeader(MsgType::kReadReq, 1, 0);
    h.magic = 0xDEAD;
    RawSend(fd, &h, sizeof(h));
    REQUIRE(in.WaitFor(0, 1));
    absl::MutexLock l(&in.mu);
    REQUIRE(in.closed[0].second.message().find("magic") != absl::string_view::npos);
    ::close(fd);
  }
  SECTION("wrong version") {
    int fd = RawPeer(port, 1, 16);
    WireHeader h = MakeHeader(MsgType::kReadReq, 1, 0);
    h.version = 9;
    RawSend(fd, &h, sizeof(h));
    REQUIRE(in.WaitFor(0, 1));
    ::close(fd);
  }
  SECTION("page message truncated mid-payload") {
    int fd = RawPeer(port, 1, 16);
    WireHeader h = MakeHeader(MsgType::kPageData, 1, 0, 0, 0, kPageSize);
    RawSend(fd, &h, sizeof(h));
    std::vector<uint8_t> half(kPageSize / 2, 7);
    RawSend(fd, half.data(), half.size());
    ::close(fd);
    REQUIRE(in.WaitFor(0, 1));
    absl::MutexLock l(&in.mu);
    REQUIRE(absl::IsDataLoss(in.closed[0].second));
    REQUIRE(in.closed[0].second.message().find("truncated") != absl::string_view::npos);
  }
  SECTION("header naming another node") {
    int fd = RawPeer(port, 1, 16);
    WireHeader h = MakeHeader(MsgType::kReadReq, 3, 0);
    RawSend(fd, &h, sizeof(h));
    REQUIRE(in.WaitFor(0, 1));
    ::close(fd);
  }
  SECTION("handshake with another memory size or garbage is refused") {
    int fd = RawConnect(port);
    WireHeader hello = MakeHeader(MsgType::kHello, 1, 0, 999, 0, 0, kPageSize);
    RawSend(fd, &hello, sizeof(hello));
    WireHeader reply;  // the node's own HELLO (so a refused peer can tell why), then the close
    REQUIRE(::recv(fd, &reply, sizeof(reply), MSG_WAITALL) == sizeof(reply));
    CHECK(reply.arg == 16);
    char c;
    REQUIRE(::recv(fd, &c, 1, 0) <= 0);
    ::close(fd);
    fd = RawConnect(port);
    const char junk[32] = "GET / HTTP/1.1\r\n\r\n";
    RawSend(fd, junk, sizeof(junk));
    REQUIRE(::recv(fd, &c, 1, 0) <= 0);
    ::close(fd);
    REQUIRE((*t)->Peers().empty());
  }
  // Whatever happened, the transport still accepts a good peer.
  int good = RawPeer(port, 2, 16);
  WireHeader ok = MakeHeader(MsgType::kReadReq, 2, 3);
  RawSend(good, &ok, sizeof(ok));
  REQUIRE(in.WaitFor(1, 0));
  ::close(good);
}

TEST_CASE("fault messages overtake a bulk backlog on a constrained link", "[dsm][transport]") {
  DsmStats stats0(16), stats1(16);
  Inbox in0, in1;
  auto o1 = Opts(1);
  o1.link.bandwidth_bytes_per_sec = 40'000'000;  // 40 MB/s: the backlog below takes ~0.35 s to drain
  o1.link.one_way_latency = absl::Microseconds(200);
  auto t0 = Transport::Create(Opts(0), &stats0, in0.Callbacks());
  auto t1 = Transport::Create(o1, &stats1, in1.Callbacks());
  REQUIRE(t0.ok());
  REQUIRE(t1.ok());
  REQUIRE((*t1)->Connect(0, "127.0.0.1", (*t0)->port(), absl::Seconds(2)).ok());
  constexpr size_t kBulk = 200;  // 200 x 64 KiB
  Message bulk;
  bulk.type = MsgType::kUser;
  bulk.payload.assign(kMaxBulkPayload, 3);
  for (size_t i = 0; i < kBulk; ++i) REQUIRE((*t1)->Send(0, bulk, Lane::kBulk).ok());
  const uint64_t sent_before = stats1.messages_sent.load();
  const absl::Time t_send = absl::Now();
  Message fault;
  fault.type = MsgType::kReadReq;
  fault.page = 1;
  REQUIRE((*t1)->Send(0, fault, Lane::kFault).ok());
  REQUIRE(in0.WaitFor(1, 0));
  absl::Time t_fault_seen;
  for (;;) {
    {
      absl::MutexLock l(&in0.mu);
      if (in0.got.back().type == MsgType::kReadReq || std::any_of(in0.got.begin(), in0.got.end(), [](const Message& m) {
            return m.type == MsgType::kReadReq;
          })) {
        t_fault_seen = absl::Now();
        break;
      }
    }
    absl::SleepFor(absl::Microseconds(200));
  }
  REQUIRE(in0.WaitFor(kBulk + 1, 0, absl::Seconds(20)));
  const absl::Time t_all = absl::Now();
  absl::MutexLock l(&in0.mu);
  size_t pos = 0;
  while (in0.got[pos].type != MsgType::kReadReq) ++pos;
  INFO("fault at position " << pos << ", " << sent_before << " bulk messages had left before it; fault after "
                            << absl::FormatDuration(t_fault_seen - t_send) << ", backlog drained after "
                            << absl::FormatDuration(t_all - t_send));
  REQUIRE(pos <= sent_before + 2);  // overtook everything still queued: at most the message on the wire
  REQUIRE(pos < kBulk / 2);
  REQUIRE(t_fault_seen - t_send < (t_all - t_send) / 4);
}

DataPlaneSecret Secret(uint8_t fill) {
  std::vector<uint8_t> bytes(kDataPlaneSecretSize, fill);
  auto s = DataPlaneSecret::FromBytes(bytes);
  REQUIRE(s.ok());
  return *s;
}

Transport::Options SealedOpts(NodeId self, uint8_t key) {
  Transport::Options o = Opts(self);
  o.secret = Secret(key);
  return o;
}

TEST_CASE("a sealed data plane carries pages; a peer without the key, or a plaintext one, is refused",
          "[dsm][transport][cipher]") {
  DsmStats stats(16);
  Inbox in0, in1, in_other;
  auto [t0, t1] = Connect(SealedOpts(0, 7), SealedOpts(1, 7), &stats, in0, in1);
  Message m;
  m.type = MsgType::kPageData;
  m.page = 3;
  m.payload.assign(kPageSize, 0x5C);
  REQUIRE(t0->Send(1, m).ok());
  REQUIRE(t1->Send(0, m).ok());
  REQUIRE(in1.WaitFor(1, 0));
  REQUIRE(in0.WaitFor(1, 0));
  {
    absl::MutexLock l(&in1.mu);
    CHECK(in1.got[0].payload == m.payload);
    CHECK(in1.got[0].page == 3);
  }

  SECTION("another VM's key fails the key check") {
    auto other = Transport::Create(SealedOpts(2, 8), &stats, in_other.Callbacks());
    REQUIRE(other.ok());
    absl::Status st = (*other)->Connect(0, "127.0.0.1", t0->port(), absl::Seconds(2));
    REQUIRE_FALSE(st.ok());
    CHECK(st.code() == absl::StatusCode::kPermissionDenied);
    CHECK_THAT(std::string(st.message()), Catch::Contains("node 0 failed the data-plane key check"));
  }
  SECTION("a plaintext node is refused by a sealed one, and the other way round") {
    auto plain = Transport::Create(Opts(2), &stats, in_other.Callbacks());
    REQUIRE(plain.ok());
    CHECK_FALSE((*plain)->Connect(0, "127.0.0.1", t0->port(), absl::Seconds(2)).ok());
    absl::Status st = t1->Connect(2, "127.0.0.1", (*plain)->port(), absl::Seconds(2));
    REQUIRE_FALSE(st.ok());
    CHECK(st.code() == absl::StatusCode::kPermissionDenied);
    CHECK_THAT(std::string(st.message()), Catch::Contains("node 2 offers a plaintext data plane"));
  }
  CHECK(t0->Peers() == std::vector<NodeId>{1});
}

// A raw peer that completes a sealed handshake as node `id`, so the test can put any bytes on the wire after it.
struct SealedRawPeer {
  int fd = -1;
  ChannelCipher cipher;

  SealedRawPeer(uint16_t port, NodeId id, uint32_t pages, const DataPlaneSecret& secret) {
    fd = RawConnect(port);
    HelloNonce mine;
    mine.fill(0x42);
    WireHeader hello = MakeHeader(MsgType::kHello, id, 0, pages, kFlagSealedChannel, kHelloNonceSize, kPageSize);
    RawSend(fd, &hello, sizeof(hello));
    RawSend(fd, mine.data(), mine.size());
    WireHeader reply;
    HelloNonce theirs;
    REQUIRE(::recv(fd, &reply, sizeof(reply), MSG_WAITALL) == sizeof(reply));
    REQUIRE((reply.flags & kFlagSealedChannel) != 0);
    REQUIRE(::recv(fd, theirs.data(), theirs.size(), MSG_WAITALL) == static_cast<ssize_t>(theirs.size()));
    auto c = DeriveChannelCipher(secret, /*initiator=*/true, id, reply.src_node, mine, theirs);
    REQUIRE(c.ok());
    cipher = *std::move(c);
    auto confirm = SealFrame(MakeHeader(MsgType::kHeartbeat, id, 0), {});
    RawSend(fd, confirm.data(), confirm.size());
    uint8_t len[kFrameLengthSize];
    REQUIRE(::recv(fd, len, sizeof(len), MSG_WAITALL) == sizeof(len));
    std::vector<uint8_t> body(kMinSealedLength);
    REQUIRE(::recv(fd, body.data(), body.size(), MSG_WAITALL) == static_cast<ssize_t>(body.size()));
    WireHeader h;
    std::vector<uint8_t> payload;
    REQUIRE(cipher.receive->Open(kMinSealedLength, body, &h, &payload).ok());
  }
  ~SealedRawPeer() { ::close(fd); }
  std::vector<uint8_t> SealFrame(const WireHeader& h, const std::vector<uint8_t>& payload) {
    std::vector<uint8_t> out;
    REQUIRE(cipher.send->Seal(h, payload, &out).ok());
    return out;
  }
};

TEST_CASE("a tampered or replayed sealed frame drops the connection and is reported", "[dsm][transport][cipher]") {
  DsmStats stats(16);
  Inbox in;
  const DataPlaneSecret secret = Secret(9);
  Transport::Options o = Opts(0);
  o.secret = secret;
  auto t = Transport::Create(o, &stats, in.Callbacks());
  REQUIRE(t.ok());
  SealedRawPeer peer((*t)->port(), 1, 16, secret);
  const auto good = peer.SealFrame(MakeHeader(MsgType::kReadReq, 1, 4), {});
  RawSend(peer.fd, good.data(), good.size());
  REQUIRE(in.WaitFor(1, 0));  // a well-sealed frame is delivered

  SECTION("replayed") { RawSend(peer.fd, good.data(), good.size()); }
  SECTION("one bit flipped in the ciphertext") {
    auto bad = peer.SealFrame(MakeHeader(MsgType::kReadReq, 1, 5), {});
    bad[kFrameLengthSize + 9] ^= 0x01;
    RawSend(peer.fd, bad.data(), bad.size());
  }
  SECTION("a plaintext header slipped in") {
    WireHeader plain = MakeHeader(MsgType::kReadReq, 1, 6);
    RawSend(peer.fd, &plain, sizeof(plain));
  }
  REQUIRE(in.WaitFor(1, 1));
  absl::MutexLock l(&in.mu);
  CHECK(in.got.size() == 1);  // nothing after the bad frame was delivered
  CHECK(in.closed[0].first == 1);
  CHECK(in.closed[0].second.code() == absl::StatusCode::kDataLoss);
  CHECK(stats.frames_rejected.load() == 1);
}

TEST_CASE("home-only pages never go on the wire: the message is refused and the link closed",
          "[dsm][transport][home_only]") {
  DsmStats stats(16);
  Inbox in0, in1;
  Transport::Options o0 = SealedOpts(0, 3);
  o0.never_send = {{5, 7}};  // pages 5 and 6
  auto [t0, t1] = Connect(o0, SealedOpts(1, 3), &stats, in0, in1);
  Message m;
  m.type = MsgType::kPageData;
  m.payload.assign(kPageSize, 0x77);
  m.page = 7;  // next to the range: sent
  REQUIRE(t0->Send(1, m).ok());
  REQUIRE(in1.WaitFor(1, 0));
  Message ack;  // a message about a home-only page without its contents is fine
  ack.type = MsgType::kInvAck;
  ack.page = 5;
  REQUIRE(t0->Send(1, ack).ok());
  REQUIRE(in1.WaitFor(2, 0));
  m.page = 6;
  absl::Status st = t0->Send(1, m);
  REQUIRE_FALSE(st.ok());
  CHECK(st.code() == absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(st.message()), Catch::Contains("page 6 is home-only memory"));
  CHECK(stats.home_only_refusals.load() == 1);
  REQUIRE(in1.WaitFor(2, 1));  // the peer sees the link close; the page never reached it
  absl::MutexLock l(&in1.mu);
  CHECK(in1.got.size() == 2);
}

}  // namespace
}  // namespace coalesce::dsm
