// One libvirt RPC message on the wire: a 4-byte big-endian length (counting itself), the 24-byte header
// (program, version, procedure, type, serial, status) and an XDR payload. Also the error body that a reply
// with status ERROR carries, in the layout libvirt's clients decode into a virError. Pure: unit-tested,
// fuzzable.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace coalesce::daemon {

inline constexpr uint32_t kLengthBytes = 4;
inline constexpr uint32_t kHeaderBytes = 24;
// Largest whole message a libvirt client may send (VIR_NET_MESSAGE_MAX): larger lengths are a protocol error.
inline constexpr uint32_t kMessageMax = 32 * 1024 * 1024;

enum class MessageType : uint32_t {
  kCall = 0,
  kReply = 1,
  kMessage = 2,  // asynchronous event, no reply
  kStream = 3,
  kCallWithFds = 4,
  kReplyWithFds = 5,
  kStreamHole = 6,
};

enum class MessageStatus : uint32_t {
  kOk = 0,
  kError = 1,
  kContinue = 2,  // streams: more data follows
};

struct MessageHeader {
  uint32_t program = 0;
  uint32_t version = 0;
  int32_t procedure = 0;
  MessageType type = MessageType::kCall;
  uint32_t serial = 0;
  MessageStatus status = MessageStatus::kOk;
};

struct Message {
  MessageHeader header;
  std::vector<uint8_t> payload;
};

// Reads the length word; errors name a length outside [header size, kMessageMax].
absl::StatusOr<uint32_t> DecodeLength(std::span<const uint8_t, kLengthBytes> bytes);
// Decodes header and payload from the bytes after the length word.
absl::StatusOr<Message> DecodeMessage(std::span<const uint8_t> bytes_after_length);
// Length word, header and payload, ready to write.
std::vector<uint8_t> EncodeMessage(const MessageHeader& header, std::span<const uint8_t> payload);

// libvirt's error numbers (virErrorNumber) and domains (virErrorDomain) that this daemon reports.
enum ErrorCode : int32_t {
  kErrInternal = 1,           // VIR_ERR_INTERNAL_ERROR
  kErrNoSupport = 3,          // VIR_ERR_NO_SUPPORT
  kErrOperationFailed = 9,    // VIR_ERR_OPERATION_FAILED
  kErrInvalidArg = 8,         // VIR_ERR_INVALID_ARG
  kErrXmlError = 27,          // VIR_ERR_XML_ERROR
  kErrRpc = 39,               // VIR_ERR_RPC
  kErrNoDomain = 42,          // VIR_ERR_NO_DOMAIN
  kErrOperationInvalid = 55,  // VIR_ERR_OPERATION_INVALID
  kErrConfigUnsupported = 67, // VIR_ERR_CONFIG_UNSUPPORTED
};
enum ErrorDomain : int32_t {
  kFromNone = 0,
  kFromDomain = 20, // VIR_FROM_DOMAIN: domain configuration
  kFromRpc = 7,     // VIR_FROM_RPC
  kFromRemote = 13, // VIR_FROM_REMOTE
};
inline constexpr int32_t kErrorLevelError = 2;  // VIR_ERR_ERROR

struct RpcError {
  int32_t code = kErrInternal;
  int32_t domain = kFromRemote;
  std::string message;
};

// The body of a status-ERROR reply (remote_error: code, domain, message, level, dom, str1-3, int1-2, net).
std::vector<uint8_t> EncodeError(const RpcError& error);
absl::StatusOr<RpcError> DecodeError(std::span<const uint8_t> payload);

}  // namespace coalesce::daemon
