// The vhost-user wire format against the layouts in QEMU's docs/interop/vhost-user.rst, byte for byte, and
// hostile replies (random and mutated bytes) refused without a crash.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "devmodel/vhost_user/vhost_user_message.h"

using namespace coalesce::vhost_user;

namespace {

std::vector<uint8_t> Le32(uint32_t v) { return {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)}; }
std::vector<uint8_t> Le64(uint64_t v) {
  auto lo = Le32(static_cast<uint32_t>(v)), hi = Le32(static_cast<uint32_t>(v >> 32));
  lo.insert(lo.end(), hi.begin(), hi.end());
  return lo;
}
std::vector<uint8_t> Cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

TEST_CASE("requests are encoded as header {request, flags, size} and the documented payload") {
  CHECK(EncodeHeaderOnly(Request::kSetOwner) == Cat({Le32(3), Le32(1), Le32(0)}));
  CHECK(EncodeU64(Request::kSetFeatures, 0x1'4000'0000ULL) == Cat({Le32(2), Le32(1), Le32(8), Le64(0x1'4000'0000ULL)}));
  CHECK(EncodeVringState(Request::kSetVringNum, 1, 256) == Cat({Le32(8), Le32(1), Le32(8), Le32(1), Le32(256)}));
  CHECK(EncodeVringAddr({.index = 2, .flags = 0, .desc_user_addr = 0x1000, .used_user_addr = 0x3000,
                         .avail_user_addr = 0x2000, .log_guest_addr = 0}) ==
        Cat({Le32(9), Le32(1), Le32(40), Le32(2), Le32(0), Le64(0x1000), Le64(0x3000), Le64(0x2000), Le64(0)}));
  CHECK(EncodeGetConfig(0, 4) == Cat({Le32(24), Le32(1), Le32(16), Le32(0), Le32(4), Le32(0), Le32(0)}));
}

TEST_CASE("the memory table carries its region count, padding and four u64 per region") {
  MemRegion r[2] = {{0, 0xc000'0000, 0x7f00'0000'0000, 0}, {0x1'0000'0000, 0x1000'0000, 0x7f00'c000'0000, 0xc000'0000}};
  auto b = EncodeMemTable(r, kFlagNeedReply);
  REQUIRE(b.ok());
  CHECK(*b == Cat({Le32(5), Le32(1 | kFlagNeedReply), Le32(8 + 64), Le32(2), Le32(0), Le64(0), Le64(0xc000'0000),
                   Le64(0x7f00'0000'0000), Le64(0), Le64(0x1'0000'0000), Le64(0x1000'0000),
                   Le64(0x7f00'c000'0000), Le64(0xc000'0000)}));
  CHECK(!EncodeMemTable({}).ok());
  std::vector<MemRegion> nine(9, r[0]);
  CHECK(EncodeMemTable(nine).status().message().find("9 regions") != std::string::npos);
}

TEST_CASE("a reply header must be version 1, flagged as a reply, answer the request and stay bounded") {
  auto ok = DecodeReplyHeader(Cat({Le32(1), Le32(1 | kFlagReply), Le32(8)}), Request::kGetFeatures);
  REQUIRE(ok.ok());
  CHECK(ok->size == 8);
  CHECK(DecodeReplyHeader(Cat({Le32(1), Le32(1), Le32(8)}), Request::kGetFeatures).status().message().find(
            "reply flag") != std::string::npos);
  CHECK(DecodeReplyHeader(Cat({Le32(1), Le32(2 | kFlagReply), Le32(8)}), Request::kGetFeatures)
            .status()
            .message()
            .find("version 2") != std::string::npos);
  CHECK(DecodeReplyHeader(Cat({Le32(15), Le32(1 | kFlagReply), Le32(8)}), Request::kGetFeatures)
            .status()
            .message()
            .find("GET_FEATURES reply: answers request 15") != std::string::npos);
  CHECK(!DecodeReplyHeader(Cat({Le32(1), Le32(1 | kFlagReply), Le32(kMaxPayload + 1)}), Request::kGetFeatures).ok());
  CHECK(!DecodeReplyHeader(Le32(1), Request::kGetFeatures).ok());
}

TEST_CASE("reply payloads are decoded at their exact sizes") {
  CHECK(*DecodeU64(Request::kGetFeatures, Le64(42)) == 42);
  CHECK(!DecodeU64(Request::kGetFeatures, Le32(42)).ok());
  auto vs = DecodeVringState(Request::kGetVringBase, Cat({Le32(1), Le32(77)}));
  REQUIRE(vs.ok());
  CHECK((vs->index == 1 && vs->num == 77));
  auto cfg = DecodeConfig(Cat({Le32(0), Le32(4), Le32(0), {1, 2, 3, 4}}), 4);
  REQUIRE(cfg.ok());
  CHECK(*cfg == std::vector<uint8_t>{1, 2, 3, 4});
  CHECK(!DecodeConfig(Cat({Le32(0), Le32(2), Le32(0), {1, 2, 3, 4}}), 4).ok());
  CHECK(!DecodeConfig(Cat({Le32(0), Le32(4), Le32(0), {1, 2}}), 4).ok());
}

TEST_CASE("random and mutated replies are refused or decoded, never a crash") {
  std::mt19937_64 rng(20261204);
  const std::vector<uint8_t> good = Cat({Le32(24), Le32(1 | kFlagReply), Le32(16), Le32(0), Le32(4), Le32(0), {9, 9, 9, 9}});
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> b = good;
    if (i % 2 == 0) {
      b.resize(rng() % 40);
      for (auto& x : b) x = static_cast<uint8_t>(rng());
    } else {
      b[rng() % b.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    }
    std::span<const uint8_t> all(b);
    if (all.size() < kHeaderSize) {
      CHECK(!DecodeReplyHeader(all, Request::kGetConfig).ok());
      continue;
    }
    auto h = DecodeReplyHeader(all.first(kHeaderSize), Request::kGetConfig);
    std::span<const uint8_t> payload = all.subspan(kHeaderSize);
    if (h.ok() && h->size == payload.size()) (void)DecodeConfig(payload, 4);
    (void)DecodeU64(Request::kGetFeatures, payload);
    (void)DecodeVringState(Request::kGetVringBase, payload);
  }
}
