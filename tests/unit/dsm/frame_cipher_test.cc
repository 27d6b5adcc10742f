// The data plane's AEAD framing against independent facts: both ends derive matching keys, and any change to a
// frame (a flipped bit anywhere, a replay, a reorder, a frame of the other direction or another connection, another
// VM's key) is refused. The seal is also checked against OpenSSL's one-shot AES-256-GCM on a known key, so the
// framing is what frame_cipher.h documents, not merely self-consistent.
#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "dsm/frame_cipher.h"

namespace coalesce::dsm {
namespace {

DataPlaneSecret Secret(uint8_t fill) {
  std::vector<uint8_t> bytes(kDataPlaneSecretSize, fill);
  auto s = DataPlaneSecret::FromBytes(bytes);
  REQUIRE(s.ok());
  return *s;
}

HelloNonce Nonce(uint8_t fill) {
  HelloNonce n;
  n.fill(fill);
  return n;
}

struct Pair {
  ChannelCipher initiator;
  ChannelCipher responder;
};

Pair Connect(const DataPlaneSecret& a, const DataPlaneSecret& b, uint8_t ni = 1, uint8_t nr = 2) {
  auto i = DeriveChannelCipher(a, /*initiator=*/true, 3, 0, Nonce(ni), Nonce(nr));
  auto r = DeriveChannelCipher(b, /*initiator=*/false, 3, 0, Nonce(ni), Nonce(nr));
  REQUIRE(i.ok());
  REQUIRE(r.ok());
  return {*std::move(i), *std::move(r)};
}

std::vector<uint8_t> Seal(FrameSealer& s, const WireHeader& h, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out;
  REQUIRE(s.Seal(h, payload, &out).ok());
  return out;
}

uint32_t LengthOf(const std::vector<uint8_t>& frame) {
  uint32_t l;
  std::memcpy(&l, frame.data(), sizeof(l));
  return l;
}

absl::Status Open(FrameOpener& o, const std::vector<uint8_t>& frame, WireHeader* h, std::vector<uint8_t>* payload) {
  std::span<const uint8_t> body(frame.data() + kFrameLengthSize, frame.size() - kFrameLengthSize);
  return o.Open(LengthOf(frame), body, h, payload);
}

TEST_CASE("sealed frames open at the other end, in both directions", "[dsm][cipher]") {
  Pair p = Connect(Secret(7), Secret(7));
  std::vector<uint8_t> page(kPageSize);
  for (size_t i = 0; i < page.size(); ++i) page[i] = static_cast<uint8_t>(i * 13);
  const WireHeader h = MakeHeader(MsgType::kPageData, 3, 42, 0, kFlagGrantModified, kPageSize, 9);
  for (int round = 0; round < 3; ++round) {
    auto frame = Seal(*p.initiator.send, h, page);
    REQUIRE(frame.size() == kFrameLengthSize + sizeof(WireHeader) + kPageSize + kFrameTagSize);
    // The page does not appear in clear on the wire.
    REQUIRE(std::search(frame.begin(), frame.end(), page.begin(), page.begin() + 64) == frame.end());
    WireHeader got;
    std::vector<uint8_t> payload;
    REQUIRE(Open(*p.responder.receive, frame, &got, &payload).ok());
    CHECK(std::memcmp(&got, &h, sizeof(h)) == 0);
    CHECK(payload == page);
    auto back = Seal(*p.responder.send, MakeHeader(MsgType::kInvAck, 0, 42), {});
    REQUIRE(Open(*p.initiator.receive, back, &got, &payload).ok());
    CHECK(got.type == static_cast<uint8_t>(MsgType::kInvAck));
    CHECK(payload.empty());
  }
  CHECK(p.initiator.send->frames() == 3);
  CHECK(p.responder.receive->frames() == 3);
}

TEST_CASE("a frame is AES-256-GCM of header and payload under the frame number, the length as AAD",
          "[dsm][cipher]") {
  // Recompute frame 0 with OpenSSL's EVP directly, from a key derived independently (HKDF spelled out with HMAC).
  const DataPlaneSecret secret = Secret(0x5A);
  Pair p = Connect(secret, secret, 0x11, 0x22);
  const WireHeader h = MakeHeader(MsgType::kReadReq, 3, 77, 0, 0, 0, 5);
  auto frame = Seal(*p.initiator.send, h, {});

  std::vector<uint8_t> salt(2 * kHelloNonceSize);
  std::fill(salt.begin(), salt.begin() + kHelloNonceSize, 0x11);
  std::fill(salt.begin() + kHelloNonceSize, salt.end(), 0x22);
  const std::string info = "coalesce dsm v2 initiator-to-responder 3->0";
  // HKDF-SHA256 by RFC 5869's two steps with plain HMAC: PRK = HMAC(salt, secret); key = HMAC(PRK, info || 0x01).
  uint8_t prk[32];
  unsigned prk_len = 0;
  REQUIRE(HMAC(EVP_sha256(), salt.data(), static_cast<int>(salt.size()), secret.bytes().data(),
               secret.bytes().size(), prk, &prk_len) != nullptr);
  std::vector<uint8_t> t1(info.begin(), info.end());
  t1.push_back(0x01);
  uint8_t key[32];
  unsigned key_len = 0;
  REQUIRE(HMAC(EVP_sha256(), prk, static_cast<int>(prk_len), t1.data(), t1.size(), key, &key_len) != nullptr);
  REQUIRE(key_len == 32);

  uint8_t iv[12] = {};  // frame 0
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  std::vector<uint8_t> expect(sizeof(h) + kFrameTagSize);
  int n = 0;
  REQUIRE(EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), nullptr, key, iv) == 1);
  REQUIRE(EVP_EncryptUpdate(c, nullptr, &n, frame.data(), kFrameLengthSize) == 1);
  REQUIRE(EVP_EncryptUpdate(c, expect.data(), &n, reinterpret_cast<const uint8_t*>(&h), sizeof(h)) == 1);
  REQUIRE(EVP_EncryptFinal_ex(c, expect.data() + n, &n) == 1);
  REQUIRE(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, kFrameTagSize, expect.data() + sizeof(h)) == 1);
  EVP_CIPHER_CTX_free(c);
  CHECK(LengthOf(frame) == sizeof(h) + kFrameTagSize);
  CHECK(std::vector<uint8_t>(frame.begin() + kFrameLengthSize, frame.end()) == expect);
}

TEST_CASE("altered, replayed, reordered, reflected and foreign frames are refused", "[dsm][cipher]") {
  const WireHeader h = MakeHeader(MsgType::kPageData, 3, 1, 0, 0, kPageSize, 0);
  std::vector<uint8_t> page(kPageSize, 0xCD);
  WireHeader got;
  std::vector<uint8_t> payload;

  SECTION("every single flipped bit, in the length, ciphertext or tag") {
    Pair p = Connect(Secret(1), Secret(1));
    auto frame = Seal(*p.initiator.send, h, page);
    for (size_t byte = kFrameLengthSize; byte < frame.size(); byte += 97) {
      auto bad = frame;
      bad[byte] ^= 0x10;
      CHECK_FALSE(Open(*p.responder.receive, bad, &got, &payload).ok());
    }
    auto bad_len = frame;
    bad_len[0] ^= 1;  // a length that still fits the body is caught by the tag (the length is AAD)
    std::span<const uint8_t> body(frame.data() + kFrameLengthSize, frame.size() - kFrameLengthSize);
    CHECK_FALSE(p.responder.receive->Open(LengthOf(bad_len), body, &got, &payload).ok());
    CHECK(Open(*p.responder.receive, frame, &got, &payload).ok());  // the original still opens: nothing moved
  }
  SECTION("a replay of an earlier frame") {
    Pair p = Connect(Secret(1), Secret(1));
    auto first = Seal(*p.initiator.send, h, page);
    REQUIRE(Open(*p.responder.receive, first, &got, &payload).ok());
    auto status = Open(*p.responder.receive, first, &got, &payload);
    REQUIRE_FALSE(status.ok());
    CHECK(status.code() == absl::StatusCode::kDataLoss);
    CHECK_THAT(std::string(status.message()), Catch::Contains("frame 1 failed authentication"));
  }
  SECTION("frames out of order") {
    Pair p = Connect(Secret(1), Secret(1));
    auto first = Seal(*p.initiator.send, h, page);
    auto second = Seal(*p.initiator.send, h, page);
    CHECK_FALSE(Open(*p.responder.receive, second, &got, &payload).ok());
  }
  SECTION("a frame reflected back to its sender") {
    Pair p = Connect(Secret(1), Secret(1));
    auto frame = Seal(*p.initiator.send, h, page);
    CHECK_FALSE(Open(*p.initiator.receive, frame, &got, &payload).ok());
  }
  SECTION("a frame from another connection of the same VM") {
    Pair a = Connect(Secret(1), Secret(1), 1, 2);
    Pair b = Connect(Secret(1), Secret(1), 1, 3);
    CHECK_FALSE(Open(*b.responder.receive, Seal(*a.initiator.send, h, page), &got, &payload).ok());
  }
  SECTION("another VM's key") {
    Pair p = Connect(Secret(1), Secret(2));
    CHECK_FALSE(Open(*p.responder.receive, Seal(*p.initiator.send, h, page), &got, &payload).ok());
  }
  SECTION("lengths outside what a message can be") {
    CHECK_FALSE(FrameOpener::CheckLength(kMinSealedLength - 1).ok());
    CHECK_FALSE(FrameOpener::CheckLength(kMaxSealedLength + 1).ok());
    CHECK(FrameOpener::CheckLength(kMinSealedLength).ok());
  }
}

TEST_CASE("secrets come from the CSPRNG and only in the one size", "[dsm][cipher]") {
  auto a = DataPlaneSecret::Generate();
  auto b = DataPlaneSecret::Generate();
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(!std::equal(a->bytes().begin(), a->bytes().end(), b->bytes().begin()));
  std::vector<uint8_t> short_key(31);
  auto bad = DataPlaneSecret::FromBytes(short_key);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(std::string(bad.status().message()), Catch::Contains("a data-plane key is 32 bytes, got 31"));
}

}  // namespace
}  // namespace coalesce::dsm
