#include "hypervisor/daemon/rpc_message.h"

#include "absl/strings/str_cat.h"
#include "hypervisor/daemon/xdr_stream.h"

namespace coalesce::daemon {

absl::StatusOr<uint32_t> DecodeLength(std::span<const uint8_t, kLengthBytes> bytes) {
  const uint32_t length = (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
                          uint32_t{bytes[3]};
  // VIR_NET_MESSAGE_MAX bounds what follows the length word.
  if (length < kLengthBytes + kHeaderBytes || length - kLengthBytes > kMessageMax) {
    return absl::InvalidArgumentError(absl::StrCat("message length ", length, " is outside ",
                                                   kLengthBytes + kHeaderBytes, "..", kLengthBytes + kMessageMax));
  }
  return length;
}

absl::StatusOr<Message> DecodeMessage(std::span<const uint8_t> bytes_after_length) {
  if (bytes_after_length.size() < kHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("message of ", bytes_after_length.size(), " bytes is shorter than its header"));
  }
  XdrDecoder dec(bytes_after_length.first(kHeaderBytes));
  Message m;
  m.header.program = dec.GetU32();
  m.header.version = dec.GetU32();
  m.header.procedure = dec.GetI32();
  const uint32_t type = dec.GetU32();
  m.header.serial = dec.GetU32();
  const uint32_t status = dec.GetU32();
  if (!dec.Finished()) return absl::InvalidArgumentError(absl::StrCat("malformed header: ", dec.error()));
  if (type > static_cast<uint32_t>(MessageType::kStreamHole)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown message type ", type));
  }
  if (status > static_cast<uint32_t>(MessageStatus::kContinue)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown message status ", status));
  }
  m.header.type = static_cast<MessageType>(type);
  m.header.status = static_cast<MessageStatus>(status);
  m.payload.assign(bytes_after_length.begin() + kHeaderBytes, bytes_after_length.end());
  return m;
}

std::vector<uint8_t> EncodeMessage(const MessageHeader& header, std::span<const uint8_t> payload) {
  XdrEncoder enc;
  enc.PutU32(static_cast<uint32_t>(kLengthBytes + kHeaderBytes + payload.size()));
  enc.PutU32(header.program);
  enc.PutU32(header.version);
  enc.PutI32(header.procedure);
  enc.PutU32(static_cast<uint32_t>(header.type));
  enc.PutU32(header.serial);
  enc.PutU32(static_cast<uint32_t>(header.status));
  std::vector<uint8_t> out(enc.bytes().begin(), enc.bytes().end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<uint8_t> EncodeError(const RpcError& error) {
  XdrEncoder enc;
  enc.PutI32(error.code);
  enc.PutI32(error.domain);
  enc.PutOptionalString(error.message);
  enc.PutI32(kErrorLevelError);
  enc.PutU32(0);  // dom: none
  enc.PutOptionalString(std::nullopt);   // str1
  enc.PutOptionalString(std::nullopt);   // str2
  enc.PutOptionalString(std::nullopt);   // str3
  enc.PutI32(0);                         // int1
  enc.PutI32(0);                         // int2
  enc.PutU32(0);                         // net: none
  return {enc.bytes().begin(), enc.bytes().end()};
}

absl::StatusOr<RpcError> DecodeError(std::span<const uint8_t> payload) {
  XdrDecoder dec(payload);
  RpcError e;
  e.code = dec.GetI32();
  e.domain = dec.GetI32();
  e.message = dec.GetOptionalString().value_or("");
  dec.GetI32();  // level
  if (dec.GetBool()) {
    dec.GetString();
    dec.GetFixedOpaque<16>();
    dec.GetI32();
  }
  for (int i = 0; i < 3; ++i) dec.GetOptionalString();
  dec.GetI32();
  dec.GetI32();
  if (dec.GetBool()) {
    dec.GetString();
    dec.GetFixedOpaque<16>();
  }
  if (!dec.Finished()) return absl::InvalidArgumentError(absl::StrCat("malformed error body: ", dec.error()));
  return e;
}

}  // namespace coalesce::daemon
