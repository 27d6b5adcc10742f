// XDR encoding checked byte by byte against RFC 4506's layouts, and the decoder against truncated and
// hostile input.
#include "hypervisor/daemon/xdr_stream.h"

#include <catch2/catch.hpp>

#include <vector>

using coalesce::daemon::XdrDecoder;
using coalesce::daemon::XdrEncoder;

namespace {
std::vector<uint8_t> Bytes(const XdrEncoder& e) { return {e.bytes().begin(), e.bytes().end()}; }
}  // namespace

TEST_CASE("integers are big-endian, 4 or 8 bytes") {
  XdrEncoder e;
  e.PutU32(0x01020304);
  e.PutI32(-2);
  e.PutU64(0x1122334455667788ULL);
  CHECK(Bytes(e) == std::vector<uint8_t>{1, 2, 3, 4, 0xff, 0xff, 0xff, 0xfe, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
                                         0x77, 0x88});
  XdrDecoder d(e.bytes());
  CHECK(d.GetU32() == 0x01020304);
  CHECK(d.GetI32() == -2);
  CHECK(d.GetU64() == 0x1122334455667788ULL);
  CHECK(d.Finished());
}

TEST_CASE("strings are counted and padded to 4 bytes; optional strings carry a presence word") {
  XdrEncoder e;
  e.PutString("abcde");
  e.PutOptionalString(std::nullopt);
  e.PutOptionalString(std::string("xy"));
  CHECK(Bytes(e) == std::vector<uint8_t>{0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e', 0, 0, 0,  // "abcde"
                                         0, 0, 0, 0,                                      // absent
                                         0, 0, 0, 1, 0, 0, 0, 2, 'x', 'y', 0, 0});         // present "xy"
  XdrDecoder d(e.bytes());
  CHECK(d.GetString() == "abcde");
  CHECK_FALSE(d.GetOptionalString().has_value());
  CHECK(d.GetOptionalString() == std::optional<std::string>("xy"));
  CHECK(d.Finished());
}

TEST_CASE("fixed opaque has no count; variable opaque does") {
  XdrEncoder e;
  const uint8_t uuid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  e.PutFixedOpaque(uuid);
  const uint8_t three[3] = {7, 8, 9};
  e.PutVarOpaque(three);
  CHECK(e.size() == 16 + 4 + 4);
  XdrDecoder d(e.bytes());
  auto got = d.GetFixedOpaque<16>();
  CHECK(got[0] == 1);
  CHECK(got[15] == 16);
  CHECK(d.GetVarOpaque(100) == std::vector<uint8_t>{7, 8, 9});
  CHECK(d.Finished());
}

TEST_CASE("the encoder grows past its first buffer") {
  XdrEncoder e;
  std::string big(100000, 'q');
  e.PutString(big);
  e.PutU32(42);
  XdrDecoder d(e.bytes());
  CHECK(d.GetString() == big);
  CHECK(d.GetU32() == 42);
  CHECK(d.Finished());
}

TEST_CASE("a truncated payload fails the decoder and later reads return zero values") {
  const std::vector<uint8_t> short_bytes = {0, 0, 0};
  XdrDecoder d(short_bytes);
  CHECK(d.GetU32() == 0);
  CHECK_FALSE(d.ok());
  CHECK(d.GetString().empty());
  CHECK_THAT(d.error(), Catch::Contains("truncated"));
}

TEST_CASE("a string count larger than the payload or the limit is refused before any allocation") {
  const std::vector<uint8_t> huge = {0xff, 0xff, 0xff, 0xf0, 'a', 'b', 'c', 'd'};
  XdrDecoder d(huge);
  CHECK(d.GetString().empty());
  CHECK_FALSE(d.ok());
  const std::vector<uint8_t> five = {0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e', 0, 0, 0};
  XdrDecoder limited(five);
  limited.GetString(4);
  CHECK_FALSE(limited.ok());
}

TEST_CASE("trailing bytes, bad booleans and bad presence words are malformed") {
  const std::vector<uint8_t> trailing = {0, 0, 0, 1, 0, 0, 0, 0};
  XdrDecoder d(trailing);
  d.GetU32();
  CHECK(d.ok());
  CHECK_FALSE(d.Finished());
  const std::vector<uint8_t> two = {0, 0, 0, 2};
  XdrDecoder b(two);
  b.GetBool();
  CHECK_FALSE(b.ok());
  XdrDecoder o(two);
  o.GetOptionalString();
  CHECK_FALSE(o.ok());
}

TEST_CASE("a string holding a NUL byte is malformed") {
  const std::vector<uint8_t> nul = {0, 0, 0, 3, 'a', 0, 'b', 0};
  XdrDecoder d(nul);
  d.GetString();
  CHECK_FALSE(d.ok());
}
