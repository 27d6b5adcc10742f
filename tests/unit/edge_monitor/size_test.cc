#include <catch2/catch.hpp>

#include "edge_monitor/size.h"

namespace coalesce {
namespace {

TEST_CASE("ParseSize accepts bytes and binary suffixes", "[size]") {
  CHECK(*ParseSize("4096") == 4096);
  CHECK(*ParseSize("0") == 0);
  CHECK(*ParseSize("64K") == 64ull << 10);
  CHECK(*ParseSize("512M") == 512ull << 20);
  CHECK(*ParseSize("2G") == 2ull << 30);
  CHECK(*ParseSize("1T") == 1ull << 40);
  CHECK(*ParseSize("512m") == 512ull << 20);
  CHECK(*ParseSize("2GiB") == 2ull << 30);
  CHECK(*ParseSize("2GB") == 2ull << 30);
  CHECK(*ParseSize(" 1G ") == 1ull << 30);
  CHECK(*ParseSize("100B") == 100);
}

TEST_CASE("ParseSize rejects what is not a size and names the value", "[size]") {
  auto bad = ParseSize("abc", "memory");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(bad.status().message()), Catch::StartsWith("memory: 'abc' is not a size"));
  for (const char* text : {"", "G", "1.5G", "-1G", "1X", "1GG", "1 G B", "0x100", "1Gi"}) {
    INFO(text);
    CHECK_FALSE(ParseSize(text).ok());
  }
}

TEST_CASE("ParseSize rejects overflow", "[size]") {
  CHECK(ParseSize("18446744073709551615").ok());
  auto too_big = ParseSize("18446744073709551616", "memory");
  REQUIRE_FALSE(too_big.ok());
  CHECK_THAT(std::string(too_big.status().message()), Catch::Contains("too large"));
  CHECK_FALSE(ParseSize("16777216T").ok());
  CHECK(*ParseSize("16777215T") == 16777215ull << 40);
}

TEST_CASE("FormatSize writes the shortest exact form", "[size]") {
  CHECK(FormatSize(512ull << 20) == "512M");
  CHECK(FormatSize(2ull << 30) == "2G");
  CHECK(FormatSize(1536ull << 20) == "1536M");
  CHECK(FormatSize(1000) == "1000");
  CHECK(FormatSize(0) == "0");
  for (uint64_t v : {uint64_t{4096}, uint64_t{3} << 40, uint64_t{12345}}) CHECK(*ParseSize(FormatSize(v)) == v);
}

TEST_CASE("CheckHomeAllowance: whole pages and at least 16M, named as given", "[size]") {
  CHECK(CheckHomeAllowance(16ull << 20, "home.memory", "16M").ok());
  CHECK(CheckHomeAllowance(1ull << 30, "home-memory", "1G").ok());
  const absl::Status small = CheckHomeAllowance(8ull << 20, "home.memory", "8M");
  CHECK(small.code() == absl::StatusCode::kInvalidArgument);
  CHECK(small.message() == "home.memory: '8M' must be a multiple of 4K and at least 16M");
  CHECK_FALSE(CheckHomeAllowance((32ull << 20) + 100, "home-memory", "33554532").ok());
}

}  // namespace
}  // namespace coalesce
