#include "devmodel/vhost_user/vhost_user_message.h"

#include "absl/strings/str_format.h"

namespace coalesce::vhost_user {
namespace {

void Put32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void Put64(std::vector<uint8_t>& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint32_t Get32(std::span<const uint8_t> b, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(b[at + i]) << (8 * i);
  return v;
}
uint64_t Get64(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint64_t>(Get32(b, at)) | (static_cast<uint64_t>(Get32(b, at + 4)) << 32);
}

std::vector<uint8_t> Header(Request r, uint32_t flags, uint32_t size) {
  std::vector<uint8_t> b;
  b.reserve(kHeaderSize + size);
  Put32(b, static_cast<uint32_t>(r));
  Put32(b, kVersion | flags);
  Put32(b, size);
  return b;
}

}  // namespace

const char* RequestName(Request r) {
  switch (r) {
    case Request::kGetFeatures: return "GET_FEATURES";
    case Request::kSetFeatures: return "SET_FEATURES";
    case Request::kSetOwner: return "SET_OWNER";
    case Request::kSetMemTable: return "SET_MEM_TABLE";
    case Request::kSetVringNum: return "SET_VRING_NUM";
    case Request::kSetVringAddr: return "SET_VRING_ADDR";
    case Request::kSetVringBase: return "SET_VRING_BASE";
    case Request::kGetVringBase: return "GET_VRING_BASE";
    case Request::kSetVringKick: return "SET_VRING_KICK";
    case Request::kSetVringCall: return "SET_VRING_CALL";
    case Request::kGetProtocolFeatures: return "GET_PROTOCOL_FEATURES";
    case Request::kSetProtocolFeatures: return "SET_PROTOCOL_FEATURES";
    case Request::kGetQueueNum: return "GET_QUEUE_NUM";
    case Request::kSetVringEnable: return "SET_VRING_ENABLE";
    case Request::kGetConfig: return "GET_CONFIG";
  }
  return "unknown request";
}

std::vector<uint8_t> EncodeHeaderOnly(Request r, uint32_t flags) { return Header(r, flags, 0); }

std::vector<uint8_t> EncodeU64(Request r, uint64_t value, uint32_t flags) {
  std::vector<uint8_t> b = Header(r, flags, 8);
  Put64(b, value);
  return b;
}

std::vector<uint8_t> EncodeVringState(Request r, uint32_t index, uint32_t num, uint32_t flags) {
  std::vector<uint8_t> b = Header(r, flags, 8);
  Put32(b, index);
  Put32(b, num);
  return b;
}

std::vector<uint8_t> EncodeVringAddr(const VringAddr& a, uint32_t flags) {
  std::vector<uint8_t> b = Header(Request::kSetVringAddr, flags, 40);
  Put32(b, a.index);
  Put32(b, a.flags);
  Put64(b, a.desc_user_addr);
  Put64(b, a.used_user_addr);
  Put64(b, a.avail_user_addr);
  Put64(b, a.log_guest_addr);
  return b;
}

absl::StatusOr<std::vector<uint8_t>> EncodeMemTable(std::span<const MemRegion> regions, uint32_t flags) {
  if (regions.empty() || regions.size() > kMaxMemRegions) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vhost-user memory table: %u regions (1 to %u)", regions.size(), kMaxMemRegions));
  }
  // {u32 nregions, u32 padding, regions[nregions]}; each region is 4 x u64.
  std::vector<uint8_t> b = Header(Request::kSetMemTable, flags, static_cast<uint32_t>(8 + 32 * regions.size()));
  Put32(b, static_cast<uint32_t>(regions.size()));
  Put32(b, 0);
  for (const MemRegion& r : regions) {
    Put64(b, r.guest_phys);
    Put64(b, r.size);
    Put64(b, r.user_addr);
    Put64(b, r.mmap_offset);
  }
  return b;
}

std::vector<uint8_t> EncodeGetConfig(uint32_t offset, uint32_t size) {
  // {u32 offset, u32 size, u32 flags, u8 payload[size]}
  std::vector<uint8_t> b = Header(Request::kGetConfig, 0, 12 + size);
  Put32(b, offset);
  Put32(b, size);
  Put32(b, 0);
  b.resize(b.size() + size, 0);
  return b;
}

absl::StatusOr<ReplyHeader> DecodeReplyHeader(std::span<const uint8_t> header, Request expected) {
  if (header.size() != kHeaderSize) {
    return absl::DataLossError(absl::StrFormat("vhost-user %s reply: header of %u bytes", RequestName(expected),
                                               header.size()));
  }
  ReplyHeader h{static_cast<Request>(Get32(header, 0)), Get32(header, 4), Get32(header, 8)};
  if ((h.flags & 0x3) != kVersion) {
    return absl::DataLossError(
        absl::StrFormat("vhost-user %s reply: version %u (want 1)", RequestName(expected), h.flags & 0x3));
  }
  if (!(h.flags & kFlagReply)) {
    return absl::DataLossError(absl::StrFormat("vhost-user %s reply: reply flag not set (flags %#x)",
                                               RequestName(expected), h.flags));
  }
  if (h.request != expected) {
    return absl::DataLossError(absl::StrFormat("vhost-user %s reply: answers request %u instead",
                                               RequestName(expected), static_cast<uint32_t>(h.request)));
  }
  if (h.size > kMaxPayload) {
    return absl::DataLossError(
        absl::StrFormat("vhost-user %s reply: payload of %u bytes (at most %u)", RequestName(expected), h.size,
                        kMaxPayload));
  }
  return h;
}

absl::StatusOr<uint64_t> DecodeU64(Request r, std::span<const uint8_t> payload) {
  if (payload.size() != 8) {
    return absl::DataLossError(
        absl::StrFormat("vhost-user %s reply: %u-byte payload (want 8)", RequestName(r), payload.size()));
  }
  return Get64(payload, 0);
}

absl::StatusOr<VringState> DecodeVringState(Request r, std::span<const uint8_t> payload) {
  if (payload.size() != 8) {
    return absl::DataLossError(
        absl::StrFormat("vhost-user %s reply: %u-byte payload (want 8)", RequestName(r), payload.size()));
  }
  return VringState{Get32(payload, 0), Get32(payload, 4)};
}

absl::StatusOr<std::vector<uint8_t>> DecodeConfig(std::span<const uint8_t> payload, uint32_t size) {
  if (payload.size() != 12 + static_cast<size_t>(size)) {
    return absl::DataLossError(absl::StrFormat("vhost-user GET_CONFIG reply: %u-byte payload (want %u)",
                                               payload.size(), 12 + size));
  }
  if (Get32(payload, 4) != size) {
    return absl::DataLossError(
        absl::StrFormat("vhost-user GET_CONFIG reply: %u config bytes (asked %u)", Get32(payload, 4), size));
  }
  return std::vector<uint8_t>(payload.begin() + 12, payload.end());
}

}  // namespace coalesce::vhost_user
