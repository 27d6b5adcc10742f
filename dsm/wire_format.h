// The DSM data plane's wire format, defined in this one place: a fixed 32-byte binary header, optionally followed
// by a raw payload (a 4 KiB page for page transfers). Every field is little-endian (the only hosts Coalesce runs
// on are x86-64, checked below), so the header is sent as is with writev(): header and page in one system call.
//
// Bump kWireVersion on any change to the header layout or to the meaning of a message; peers with another version
// are refused at HELLO.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace coalesce::dsm {

static_assert(std::endian::native == std::endian::little, "the DSM wire format is little-endian");

inline constexpr uint16_t kWireMagic = 0xC0A1;
inline constexpr uint8_t kWireVersion = 4;
inline constexpr size_t kPageSize = 4096;
// Upper bound for any payload (bulk messages included): a peer announcing more is malformed.
inline constexpr uint32_t kMaxPayload = 256 * 1024;

using NodeId = uint16_t;
inline constexpr NodeId kNoNode = 0xFFFF;
inline constexpr NodeId kMaxNodes = 64;  // copysets are 64-bit masks

// Every message of the protocol. docs/DSM.md has the state machine that uses them.
enum class MsgType : uint8_t {
  kHello = 1,       // connection set-up: src, arg = page count, seq = page size; sealed: a 32-byte nonce
  kReadReq = 2,     // requester -> manager: wants a Shared copy of `page` (arg: read-ahead pages wanted)
  kWriteReq = 3,    // requester -> manager: wants `page` Modified
  kFwdRead = 4,     // manager -> owner: send a Shared copy to node `arg`, downgrade to Shared
  kFwdWrite = 5,    // manager -> owner: hand ownership to node `arg` (with data unless flag kNoData)
  kInvalidate = 6,  // manager -> sharer: drop your copy
  kInvAck = 7,      // sharer -> manager
  kPageData = 8,    // owner -> requester: grant in flags (Shared/Modified), 4 KiB payload unless kNoData
  kReadDone = 9,    // requester -> manager: Shared copy installed, the manager may serve the next request
  kWriteDone = 10,  // requester -> manager: now the owner, Modified
  kEvictReq = 11,   // leaving node -> manager: take my copy back (payload if I believed I was the owner)
  kEvictAck = 12,   // manager -> leaving node: the directory no longer lists you for `page`
  kLeave = 13,      // graceful goodbye: the peer's later disconnect is not an error
  kHeartbeat = 14,  // liveness, sent when a link has been idle
  kUser = 15,       // bulk lane: opaque bytes for the application (forwarded I/O, state transfer)
  kEvictDone = 16,  // leaving node -> manager: copy dropped; the manager may serve the next request
};
inline constexpr uint8_t kMaxMsgType = 16;

// Flags.
inline constexpr uint16_t kFlagGrantModified = 1 << 0;  // kPageData: grant Modified (else Shared)
inline constexpr uint16_t kFlagNoData = 1 << 1;         // kPageData/kFwdWrite: no payload, requester has the data
// kPageData sent by the manager itself (it was the owner): the operation is complete, send no READ/WRITE_DONE.
// Safe because the manager's later messages about the page travel the same connection, in order, behind it.
inline constexpr uint16_t kFlagOpDone = 1 << 2;
// kHello: this node seals its frames (frame_cipher.h); the HELLO carries its 32-byte nonce.
inline constexpr uint16_t kFlagSealedChannel = 1 << 3;
inline constexpr uint32_t kHelloNonceSize = 32;
// kPageData / kEvictReq: the page is all zeros; it travels as this flag, without the 4 KiB payload.
inline constexpr uint16_t kFlagZeroPage = 1 << 4;
// kPageData: a Shared copy the requester did not ask for, pushed by the manager (which owns the page) after the
// grant of a sequential read miss; seq 0, always with kFlagOpDone. A kReadReq's `arg` asks for up to this many
// following pages (the requester's read-ahead window).
inline constexpr uint16_t kFlagReadAhead = 1 << 5;
inline constexpr uint32_t kMaxReadAhead = 16;
// kPageData: the manager, which owned the page and held its only copy, hands it to a memory node unasked (home
// over its memory allowance; docs/DSM.md, "Spilling to memory nodes"). Always with kFlagGrantModified and
// kFlagOpDone, seq 0, with the page.
inline constexpr uint16_t kFlagSpill = 1 << 6;

struct WireHeader {
  uint16_t magic;
  uint8_t version;
  uint8_t type;
  uint16_t src_node;
  uint16_t flags;
  uint32_t payload_len;
  uint32_t arg;  // a node id (requester) or a small count, by type
  uint64_t page;
  uint64_t seq;  // request id or timestamp, by type
};
static_assert(sizeof(WireHeader) == 32, "the header is part of the wire format");

const char* MsgTypeName(MsgType t);

// Checks magic, version, type and the payload length each type allows. Error text is the logged reason.
absl::Status ValidateHeader(const WireHeader& h);
// What a node accepts on its connection to `peer` after the handshake: a valid header that names that peer as
// its source and is not a second HELLO. The receive loop and the DSM frame fuzzer both use this one check.
absl::Status ValidatePeerHeader(const WireHeader& h, NodeId peer);

inline WireHeader MakeHeader(MsgType type, NodeId src, uint64_t page, uint32_t arg = 0, uint16_t flags = 0,
                             uint32_t payload_len = 0, uint64_t seq = 0) {
  return WireHeader{kWireMagic, kWireVersion, static_cast<uint8_t>(type), src, flags, payload_len, arg, page, seq};
}

}  // namespace coalesce::dsm
