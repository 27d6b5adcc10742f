#include <catch2/catch.hpp>

#include "edge_monitor/guest_ranges.h"

namespace coalesce {
namespace {

TEST_CASE("guest ranges: START+SIZE lists, sorted, and back", "[guest_ranges]") {
  auto r = ParseGuestRanges("0x2000000+2M,0x1000000+64K,16384+4K", "--home-only-memory");
  REQUIRE(r.ok());
  REQUIRE(r->size() == 3);
  CHECK((*r)[0] == GuestRange{16384, 4096});
  CHECK((*r)[1] == GuestRange{0x1000000, 64 << 10});
  CHECK((*r)[2] == GuestRange{0x2000000, 2 << 20});
  CHECK(FormatGuestRanges(*r) == "0x4000+4K,0x1000000+64K,0x2000000+2M");
  CHECK(*ParseGuestRanges(FormatGuestRanges(*r), "x") == *r);
}

TEST_CASE("guest ranges: each error names the flag and the item", "[guest_ranges]") {
  auto error = [](const char* text) {
    auto r = ParseGuestRanges(text, "--home-only-memory");
    REQUIRE_FALSE(r.ok());
    return std::string(r.status().message());
  };
  CHECK_THAT(error("0x1000"), Catch::Contains("--home-only-memory: '0x1000': expected START+SIZE"));
  CHECK_THAT(error("0x1001+4K"), Catch::Contains("multiples of 4 KiB"));
  CHECK_THAT(error("0x1000+5000"), Catch::Contains("multiples of 4 KiB"));
  CHECK_THAT(error("0x1000+0"), Catch::Contains("SIZE is 0"));
  CHECK_THAT(error("zz+4K"), Catch::Contains("START is not an address"));
  CHECK_THAT(error("0x1000+lots"), Catch::Contains("'0x1000+lots'"));
  CHECK_THAT(error("0x1000+8K,0x2000+4K"), Catch::Contains("ranges at 0x1000 and 0x2000 overlap"));
  CHECK_THAT(error("0xfffffffffffff000+8K"), Catch::Contains("wraps"));
}

}  // namespace
}  // namespace coalesce
