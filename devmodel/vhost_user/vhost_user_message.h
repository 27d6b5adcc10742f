// The vhost-user wire format (QEMU's docs/interop/vhost-user.rst; facts, not code): a 12-byte header
// {request, flags, size} and a payload, file descriptors riding along as SCM_RIGHTS. Pure encoders and one
// decoder for back-end replies, so the format is unit-tested and fuzzed without a socket.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace coalesce::vhost_user {

enum class Request : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kSetMemTable = 5,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kGetConfig = 24,
};
const char* RequestName(Request r);

inline constexpr uint32_t kVersion = 0x1;
inline constexpr uint32_t kFlagReply = 0x4;
inline constexpr uint32_t kFlagNeedReply = 0x8;
inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxPayload = 4096;     // larger than any message we send or accept
inline constexpr uint32_t kMaxMemRegions = 8;   // without CONFIGURE_MEM_SLOTS
inline constexpr uint32_t kMaxConfigSize = 256;
inline constexpr uint64_t kVringNoFd = 1ULL << 8;  // in SET_VRING_KICK/CALL: no fd attached

// Virtio feature bit 30: the back end speaks the protocol-features extension.
inline constexpr uint64_t kFeatureProtocolFeatures = 1ULL << 30;
// Protocol feature bits.
inline constexpr uint64_t kProtocolMq = 1ULL << 0;
inline constexpr uint64_t kProtocolReplyAck = 1ULL << 3;
inline constexpr uint64_t kProtocolConfig = 1ULL << 9;

struct MemRegion {
  uint64_t guest_phys;
  uint64_t size;
  uint64_t user_addr;    // where the front end maps it
  uint64_t mmap_offset;  // offset into the region's fd
};

struct VringAddr {
  uint32_t index;
  uint32_t flags;
  uint64_t desc_user_addr;
  uint64_t used_user_addr;
  uint64_t avail_user_addr;
  uint64_t log_guest_addr;
};

// A whole message (header + payload), ready for sendmsg.
std::vector<uint8_t> EncodeHeaderOnly(Request r, uint32_t flags = 0);
std::vector<uint8_t> EncodeU64(Request r, uint64_t value, uint32_t flags = 0);
std::vector<uint8_t> EncodeVringState(Request r, uint32_t index, uint32_t num, uint32_t flags = 0);
std::vector<uint8_t> EncodeVringAddr(const VringAddr& addr, uint32_t flags = 0);
// InvalidArgument for no region or more than kMaxMemRegions.
absl::StatusOr<std::vector<uint8_t>> EncodeMemTable(std::span<const MemRegion> regions, uint32_t flags = 0);
std::vector<uint8_t> EncodeGetConfig(uint32_t offset, uint32_t size);

struct ReplyHeader {
  Request request;
  uint32_t flags;
  uint32_t size;
};
// Checks a reply's header against the request it answers: version 1, the reply flag, the same request, and a
// payload size within kMaxPayload. Errors name what was wrong.
absl::StatusOr<ReplyHeader> DecodeReplyHeader(std::span<const uint8_t> header, Request expected);
// Payload decoders: exact sizes, errors naming the request.
absl::StatusOr<uint64_t> DecodeU64(Request r, std::span<const uint8_t> payload);
struct VringState {
  uint32_t index;
  uint32_t num;
};
absl::StatusOr<VringState> DecodeVringState(Request r, std::span<const uint8_t> payload);
// A GET_CONFIG reply: the config bytes for the `size` asked.
absl::StatusOr<std::vector<uint8_t>> DecodeConfig(std::span<const uint8_t> payload, uint32_t size);

}  // namespace coalesce::vhost_user
