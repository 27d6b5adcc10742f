#include "dsm/frame_cipher.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hypervisor/base/openssl_errors.h"

namespace coalesce::dsm {
namespace {

constexpr size_t kGcmNonceSize = 12;
constexpr size_t kKeySize = 32;

absl::Status CryptoError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", ossl::TakeErrors()));
}

EVP_CIPHER_CTX* Raw(const CipherContext& ctx) { return static_cast<EVP_CIPHER_CTX*>(ctx.get()); }

// The GCM nonce of frame `counter`: four zero bytes, then the counter little-endian. Never repeats under one key:
// the counter only grows and a connection would need 2^64 frames to wrap it.
std::array<uint8_t, kGcmNonceSize> Nonce(uint64_t counter) {
  std::array<uint8_t, kGcmNonceSize> n{};
  for (int i = 0; i < 8; ++i) n[4 + i] = static_cast<uint8_t>(counter >> (8 * i));
  return n;
}

std::array<uint8_t, kFrameLengthSize> LengthBytes(uint32_t length) {
  return {static_cast<uint8_t>(length), static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length >> 16),
          static_cast<uint8_t>(length >> 24)};
}

absl::StatusOr<std::array<uint8_t, kKeySize>> DeriveKey(const DataPlaneSecret& secret, std::span<const uint8_t> salt,
                                                       const std::string& info) {
  std::unique_ptr<EVP_KDF, ossl::Deleter<EVP_KDF_free>> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (kdf == nullptr) return CryptoError("HKDF is not available");
  std::unique_ptr<EVP_KDF_CTX, ossl::Deleter<EVP_KDF_CTX_free>> ctx(EVP_KDF_CTX_new(kdf.get()));
  if (ctx == nullptr) return CryptoError("HKDF context");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(secret.bytes().data()),
                                        secret.bytes().size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(salt.data()), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()), info.size()),
      OSSL_PARAM_construct_end(),
  };
  std::array<uint8_t, kKeySize> key;
  if (EVP_KDF_derive(ctx.get(), key.data(), key.size(), params) != 1) return CryptoError("HKDF");
  return key;
}

absl::StatusOr<CipherContext> KeyedContext(const std::array<uint8_t, kKeySize>& key, bool encrypt) {
  CipherContext ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) return CryptoError("cipher context");
  const int ok = encrypt ? EVP_EncryptInit_ex(Raw(ctx), EVP_aes_256_gcm(), nullptr, key.data(), nullptr)
                         : EVP_DecryptInit_ex(Raw(ctx), EVP_aes_256_gcm(), nullptr, key.data(), nullptr);
  if (ok != 1) return CryptoError("AES-256-GCM key");
  return ctx;
}

}  // namespace

void CipherContextDeleter::operator()(void* ctx) const { EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(ctx)); }

absl::StatusOr<DataPlaneSecret> DataPlaneSecret::Generate() {
  DataPlaneSecret s;
  if (RAND_bytes(s.bytes_.data(), static_cast<int>(s.bytes_.size())) != 1) return CryptoError("random secret");
  return s;
}

absl::StatusOr<DataPlaneSecret> DataPlaneSecret::FromBytes(std::span<const uint8_t> bytes) {
  if (bytes.size() != kDataPlaneSecretSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("a data-plane key is %u bytes, got %u", kDataPlaneSecretSize, bytes.size()));
  }
  DataPlaneSecret s;
  std::memcpy(s.bytes_.data(), bytes.data(), bytes.size());
  return s;
}

DataPlaneSecret::~DataPlaneSecret() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

absl::StatusOr<HelloNonce> RandomHelloNonce() {
  HelloNonce n;
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) return CryptoError("random nonce");
  return n;
}

absl::Status FrameSealer::Seal(const WireHeader& header, std::span<const uint8_t> payload,
                               std::vector<uint8_t>* out) {
  const uint32_t length = static_cast<uint32_t>(sizeof(header) + payload.size() + kFrameTagSize);
  if (length > kMaxSealedLength) return absl::InvalidArgumentError("frame too large to seal");
  out->resize(kFrameLengthSize + length);
  const auto len_bytes = LengthBytes(length);
  std::memcpy(out->data(), len_bytes.data(), len_bytes.size());
  EVP_CIPHER_CTX* c = Raw(ctx_);
  const auto nonce = Nonce(counter_);
  uint8_t* dst = out->data() + kFrameLengthSize;
  int n = 0;
  if (EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, nonce.data()) != 1 ||
      EVP_EncryptUpdate(c, nullptr, &n, len_bytes.data(), static_cast<int>(len_bytes.size())) != 1 ||
      EVP_EncryptUpdate(c, dst, &n, reinterpret_cast<const uint8_t*>(&header), sizeof(header)) != 1) {
    return CryptoError("sealing a frame");
  }
  dst += n;
  if (!payload.empty()) {
    if (EVP_EncryptUpdate(c, dst, &n, payload.data(), static_cast<int>(payload.size())) != 1) {
      return CryptoError("sealing a frame");
    }
    dst += n;
  }
  if (EVP_EncryptFinal_ex(c, dst, &n) != 1) return CryptoError("sealing a frame");
  dst += n;
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, kFrameTagSize, dst) != 1) return CryptoError("frame tag");
  ++counter_;
  return absl::OkStatus();
}

absl::Status FrameOpener::CheckLength(uint32_t length) {
  if (length < kMinSealedLength || length > kMaxSealedLength) {
    return absl::DataLossError(absl::StrFormat("sealed frame length %u outside %u..%u", length, kMinSealedLength,
                                               kMaxSealedLength));
  }
  return absl::OkStatus();
}

absl::Status FrameOpener::Open(uint32_t length, std::span<const uint8_t> body, WireHeader* header,
                               std::vector<uint8_t>* payload) {
  if (absl::Status s = CheckLength(length); !s.ok()) return s;
  if (body.size() != length) return absl::DataLossError("sealed frame body shorter than its length");
  const size_t text_len = length - kFrameTagSize;
  // Decrypted straight into the caller's header and payload (no extra copy of the page); neither is used unless
  // the tag checks out.
  WireHeader h;
  payload->resize(text_len - sizeof(h));
  EVP_CIPHER_CTX* c = Raw(ctx_);
  const auto nonce = Nonce(counter_);
  const auto len_bytes = LengthBytes(length);
  int n = 0;
  if (EVP_DecryptInit_ex(c, nullptr, nullptr, nullptr, nonce.data()) != 1 ||
      EVP_DecryptUpdate(c, nullptr, &n, len_bytes.data(), static_cast<int>(len_bytes.size())) != 1 ||
      EVP_DecryptUpdate(c, reinterpret_cast<uint8_t*>(&h), &n, body.data(), sizeof(h)) != 1 ||
      (!payload->empty() && EVP_DecryptUpdate(c, payload->data(), &n, body.data() + sizeof(h),
                                              static_cast<int>(payload->size())) != 1) ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, kFrameTagSize, const_cast<uint8_t*>(body.data() + text_len)) !=
          1) {
    payload->clear();
    return CryptoError("opening a frame");
  }
  uint8_t final_block[16];
  if (EVP_DecryptFinal_ex(c, final_block, &n) != 1) {
    ossl::TakeErrors();
    payload->clear();
    return absl::DataLossError(absl::StrFormat(
        "frame %u failed authentication (altered, replayed, reordered or not sealed with this VM's key)", counter_));
  }
  ++counter_;
  *header = h;
  return absl::OkStatus();
}

absl::StatusOr<ChannelCipher> DeriveChannelCipher(const DataPlaneSecret& secret, bool initiator, NodeId initiator_node,
                                                  NodeId responder_node, const HelloNonce& initiator_nonce,
                                                  const HelloNonce& responder_nonce) {
  std::array<uint8_t, 2 * kHelloNonceSize> salt;
  std::memcpy(salt.data(), initiator_nonce.data(), kHelloNonceSize);
  std::memcpy(salt.data() + kHelloNonceSize, responder_nonce.data(), kHelloNonceSize);
  const std::string ids = absl::StrFormat(" %u->%u", initiator_node, responder_node);
  auto forward = DeriveKey(secret, salt, absl::StrCat("coalesce dsm v2 initiator-to-responder", ids));
  if (!forward.ok()) return forward.status();
  auto backward = DeriveKey(secret, salt, absl::StrCat("coalesce dsm v2 responder-to-initiator", ids));
  if (!backward.ok()) return backward.status();
  auto seal = KeyedContext(initiator ? *forward : *backward, /*encrypt=*/true);
  if (!seal.ok()) return seal.status();
  auto open = KeyedContext(initiator ? *backward : *forward, /*encrypt=*/false);
  if (!open.ok()) return open.status();
  OPENSSL_cleanse(forward->data(), forward->size());
  OPENSSL_cleanse(backward->data(), backward->size());
  ChannelCipher out;
  out.send = std::make_unique<FrameSealer>(*std::move(seal));
  out.receive = std::make_unique<FrameOpener>(*std::move(open));
  return out;
}

}  // namespace coalesce::dsm
