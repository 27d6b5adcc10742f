// RPC framing and error bodies: round trips, the exact header layout, and refusal of bad lengths, types and
// statuses.
#include "hypervisor/daemon/rpc_message.h"

#include <catch2/catch.hpp>

#include "hypervisor/daemon/xdr_stream.h"

using namespace coalesce::daemon;

TEST_CASE("a message is length, six header words, payload") {
  MessageHeader h{.program = 0x20008086, .version = 1, .procedure = 66, .type = MessageType::kReply,
                  .serial = 7, .status = MessageStatus::kOk};
  const std::vector<uint8_t> payload = {0xaa, 0xbb, 0xcc, 0xdd};
  std::vector<uint8_t> bytes = EncodeMessage(h, payload);
  REQUIRE(bytes.size() == 4 + 24 + 4);
  CHECK(std::vector<uint8_t>(bytes.begin(), bytes.begin() + 12) ==
        std::vector<uint8_t>{0, 0, 0, 32, 0x20, 0x00, 0x80, 0x86, 0, 0, 0, 1});
  auto length = DecodeLength(std::span<const uint8_t, 4>(bytes.data(), 4));
  REQUIRE(length.ok());
  CHECK(*length == 32);
  auto m = DecodeMessage(std::span<const uint8_t>(bytes).subspan(4));
  REQUIRE(m.ok());
  CHECK(m->header.program == 0x20008086);
  CHECK(m->header.procedure == 66);
  CHECK(m->header.type == MessageType::kReply);
  CHECK(m->header.serial == 7);
  CHECK(m->payload == payload);
}

TEST_CASE("lengths below a header or above the maximum are refused") {
  const uint8_t tiny[4] = {0, 0, 0, 27};
  CHECK_FALSE(DecodeLength(std::span<const uint8_t, 4>(tiny)).ok());
  const uint8_t huge[4] = {0x7f, 0, 0, 0};
  CHECK_FALSE(DecodeLength(std::span<const uint8_t, 4>(huge)).ok());
}

TEST_CASE("unknown message types and statuses are refused") {
  MessageHeader h;
  std::vector<uint8_t> bytes = EncodeMessage(h, {});
  bytes[4 + 15] = 9;  // type
  CHECK_FALSE(DecodeMessage(std::span<const uint8_t>(bytes).subspan(4)).ok());
  bytes[4 + 15] = 0;
  bytes[4 + 23] = 3;  // status
  CHECK_FALSE(DecodeMessage(std::span<const uint8_t>(bytes).subspan(4)).ok());
  CHECK_FALSE(DecodeMessage(std::span<const uint8_t>(bytes).subspan(4, 10)).ok());
}

TEST_CASE("an error body round-trips and has libvirt's field order") {
  RpcError e{.code = kErrNoDomain, .domain = kFromRemote, .message = "no domain with matching name 'x'"};
  std::vector<uint8_t> body = EncodeError(e);
  XdrDecoder d(body);
  CHECK(d.GetI32() == kErrNoDomain);
  CHECK(d.GetI32() == kFromRemote);
  CHECK(d.GetOptionalString() == std::optional<std::string>(e.message));
  CHECK(d.GetI32() == kErrorLevelError);
  auto back = DecodeError(body);
  REQUIRE(back.ok());
  CHECK(back->message == e.message);
  CHECK(back->code == kErrNoDomain);
  CHECK_FALSE(DecodeError(std::span<const uint8_t>(body).first(body.size() - 4)).ok());
}
