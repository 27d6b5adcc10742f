#include "dsm/wire_format.h"

#include "absl/strings/str_format.h"

namespace coalesce::dsm {

const char* MsgTypeName(MsgType t) {
  switch (t) {
    case MsgType::kHello: return "HELLO";
    case MsgType::kReadReq: return "READ_REQ";
    case MsgType::kWriteReq: return "WRITE_REQ";
    case MsgType::kFwdRead: return "FWD_READ";
    case MsgType::kFwdWrite: return "FWD_WRITE";
    case MsgType::kInvalidate: return "INVALIDATE";
    case MsgType::kInvAck: return "INV_ACK";
    case MsgType::kPageData: return "PAGE_DATA";
    case MsgType::kReadDone: return "READ_DONE";
    case MsgType::kWriteDone: return "WRITE_DONE";
    case MsgType::kEvictReq: return "EVICT_REQ";
    case MsgType::kEvictAck: return "EVICT_ACK";
    case MsgType::kLeave: return "LEAVE";
    case MsgType::kHeartbeat: return "HEARTBEAT";
    case MsgType::kUser: return "USER";
    case MsgType::kEvictDone: return "EVICT_DONE";
  }
  return "?";
}

absl::Status ValidateHeader(const WireHeader& h) {
  if (h.magic != kWireMagic) return absl::DataLossError(absl::StrFormat("bad magic %#x", h.magic));
  if (h.version != kWireVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("wire version %u, this node speaks %u", h.version, kWireVersion));
  }
  if (h.type == 0 || h.type > kMaxMsgType) return absl::DataLossError(absl::StrFormat("unknown type %u", h.type));
  if (h.src_node >= kMaxNodes) return absl::DataLossError(absl::StrFormat("bad source node %u", h.src_node));
  const auto type = static_cast<MsgType>(h.type);
  const bool no_data = (h.flags & kFlagNoData) != 0;
  const bool zero = (h.flags & kFlagZeroPage) != 0;
  uint32_t allowed_min = 0, allowed_max = 0;
  switch (type) {
    case MsgType::kHello:
      allowed_min = allowed_max = (h.flags & kFlagSealedChannel) != 0 ? kHelloNonceSize : 0;
      break;
    case MsgType::kPageData:
      if (no_data && zero) return absl::DataLossError("PAGE_DATA both without data and with a zero page");
      allowed_min = allowed_max = (no_data || zero) ? 0 : kPageSize;
      break;
    case MsgType::kEvictReq:
      // Either just the request or the request with the page (4 KiB, or none for a zero page).
      if (h.payload_len != 0 && (h.payload_len != kPageSize || zero)) {
        return absl::DataLossError(absl::StrFormat("EVICT_REQ with %u payload bytes", h.payload_len));
      }
      return absl::OkStatus();
    case MsgType::kReadReq:
      if (h.arg > kMaxReadAhead) {
        return absl::DataLossError(absl::StrFormat("READ_REQ asks %u pages ahead (at most %u)", h.arg, kMaxReadAhead));
      }
      break;
    case MsgType::kUser:
      allowed_max = kMaxPayload;
      break;
    default:
      break;
  }
  if (h.payload_len < allowed_min || h.payload_len > allowed_max) {
    return absl::DataLossError(absl::StrFormat("%s with %u payload bytes (allowed %u..%u)", MsgTypeName(type),
                                               h.payload_len, allowed_min, allowed_max));
  }
  return absl::OkStatus();
}

absl::Status ValidatePeerHeader(const WireHeader& h, NodeId peer) {
  if (absl::Status s = ValidateHeader(h); !s.ok()) return s;
  if (h.src_node != peer) {
    return absl::DataLossError(absl::StrFormat("header names node %u on node %u's connection", h.src_node, peer));
  }
  if (static_cast<MsgType>(h.type) == MsgType::kHello) return absl::DataLossError("HELLO after the handshake");
  return absl::OkStatus();
}

}  // namespace coalesce::dsm
