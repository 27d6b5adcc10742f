// Authenticated encryption of the DSM data plane: AES-256-GCM from OpenSSL's libcrypto (AES-NI where the CPU has
// it), with keys per connection and per direction and a frame counter as the nonce.
//
// Every node of a VM holds the same 32-byte data-plane secret, made by the home node at start and sent to each edge
// inside the mutually authenticated control plane (HostVcpus over gRPC/TLS). A connection's HELLOs carry one fresh
// random nonce from each side; HKDF-SHA256(secret, salt = initiator nonce || responder nonce, info = direction and
// both node ids) gives one key per direction, so no two connections (or directions) ever share a key.
//
// A sealed frame on the wire:  u32 length L (little-endian, authenticated as AAD) | L bytes: ciphertext | 16-byte tag
// where the plaintext is the 32-byte WireHeader followed by its payload. The GCM nonce is the frame's number on
// that connection and direction (0, 1, 2, ...), never sent: the receiver uses the number it expects next. A frame
// that was altered, dropped, reordered, replayed from earlier on this connection, or taken from another connection
// or direction therefore fails the tag check, and the connection is closed with the reason.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "dsm/wire_format.h"

namespace coalesce::dsm {

inline constexpr size_t kDataPlaneSecretSize = 32;
inline constexpr size_t kFrameTagSize = 16;
inline constexpr size_t kFrameLengthSize = 4;
// Bounds of L for a frame that can hold a valid message.
inline constexpr uint32_t kMinSealedLength = sizeof(WireHeader) + kFrameTagSize;
inline constexpr uint32_t kMaxSealedLength = sizeof(WireHeader) + kMaxPayload + kFrameTagSize;

// The VM's data-plane secret. Wiped from memory when destroyed.
class DataPlaneSecret final {
 public:
  static absl::StatusOr<DataPlaneSecret> Generate();  // from OpenSSL's CSPRNG
  static absl::StatusOr<DataPlaneSecret> FromBytes(std::span<const uint8_t> bytes);  // exactly 32 bytes
  DataPlaneSecret(const DataPlaneSecret& other) = default;
  DataPlaneSecret& operator=(const DataPlaneSecret& other) = default;
  ~DataPlaneSecret();
  [[nodiscard]] std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  DataPlaneSecret() = default;
  std::array<uint8_t, kDataPlaneSecretSize> bytes_{};
};

using HelloNonce = std::array<uint8_t, kHelloNonceSize>;
absl::StatusOr<HelloNonce> RandomHelloNonce();

struct CipherContextDeleter {
  void operator()(void* ctx) const;
};
using CipherContext = std::unique_ptr<void, CipherContextDeleter>;  // an EVP_CIPHER_CTX, keyed for one direction

// One direction of one connection. Not thread-safe: the sender seals under its write lock, and only the
// receiver thread opens.
class FrameSealer final {
 public:
  explicit FrameSealer(CipherContext ctx) : ctx_(std::move(ctx)) {}
  // Replaces `out` with the sealed frame (length, ciphertext, tag) of header + payload.
  absl::Status Seal(const WireHeader& header, std::span<const uint8_t> payload, std::vector<uint8_t>* out);
  [[nodiscard]] uint64_t frames() const { return counter_; }

 private:
  CipherContext ctx_;
  uint64_t counter_ = 0;
};

class FrameOpener final {
 public:
  explicit FrameOpener(CipherContext ctx) : ctx_(std::move(ctx)) {}
  // Checks a sealed length read from the wire before the body is read.
  static absl::Status CheckLength(uint32_t length);
  // `body` is the L bytes after the length (ciphertext and tag). On success the header and payload are the
  // plaintext (the header is not yet validated: that is ValidatePeerHeader's job). On failure nothing is returned
  // and the frame counter does not move: the caller closes the connection.
  absl::Status Open(uint32_t length, std::span<const uint8_t> body, WireHeader* header, std::vector<uint8_t>* payload);
  [[nodiscard]] uint64_t frames() const { return counter_; }

 private:
  CipherContext ctx_;
  uint64_t counter_ = 0;
};

struct ChannelCipher {
  std::unique_ptr<FrameSealer> send;
  std::unique_ptr<FrameOpener> receive;
};

// The keys of one connection as seen from one end. Both ends call this with the same nonces and node ids and
// `initiator` telling which end they are; each end's send key is the other's receive key.
absl::StatusOr<ChannelCipher> DeriveChannelCipher(const DataPlaneSecret& secret, bool initiator, NodeId initiator_node,
                                                  NodeId responder_node, const HelloNonce& initiator_nonce,
                                                  const HelloNonce& responder_nonce);

}  // namespace coalesce::dsm
