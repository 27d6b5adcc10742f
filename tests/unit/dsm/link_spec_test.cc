// The link-emulation spec users write (--link, the profile, the runtime's flag): classes, settings, round trip, errors.
#include "dsm/link_spec.h"

#include <catch2/catch.hpp>

namespace coalesce::dsm {
namespace {

TEST_CASE("link spec: classes, adjusted classes and explicit settings", "[dsm][link]") {
  auto wifi = ParseLinkSpec("wifi6e");
  REQUIRE(wifi.ok());
  REQUIRE(wifi->one_way_latency == absl::Milliseconds(2));
  REQUIRE(wifi->jitter == absl::Microseconds(500));
  REQUIRE(wifi->bandwidth_bytes_per_sec == 150'000'000);  // 1200 Mbit/s

  auto g5 = ParseLinkSpec("5g,jitter=3ms,bandwidth=1.5Gbit");
  REQUIRE(g5.ok());
  REQUIRE(g5->one_way_latency == absl::Milliseconds(14));
  REQUIRE(g5->jitter == absl::Milliseconds(3));
  REQUIRE(g5->bandwidth_bytes_per_sec == 187'500'000);

  auto pcie = ParseLinkSpec("pcie");
  REQUIRE(pcie.ok());
  REQUIRE(pcie->one_way_latency == absl::Nanoseconds(900));

  auto explicit_link = ParseLinkSpec("latency=250us,bandwidth=64kbit");
  REQUIRE(explicit_link.ok());
  REQUIRE(explicit_link->one_way_latency == absl::Microseconds(250));
  REQUIRE(explicit_link->jitter == absl::ZeroDuration());
  REQUIRE(explicit_link->bandwidth_bytes_per_sec == 8000);

  for (const char* off : {"", "none", "loopback"}) {
    auto l = ParseLinkSpec(off);
    REQUIRE(l.ok());
    REQUIRE_FALSE(l->enabled());
  }
}

TEST_CASE("link spec: the formatted form reads back to the same settings, for every class", "[dsm][link]") {
  for (const LinkClass& c : LinkClasses()) {
    INFO(c.name);
    const std::string text = FormatLinkSpec(c.link);
    auto back = ParseLinkSpec(text);
    REQUIRE(back.ok());
    REQUIRE(back->one_way_latency == c.link.one_way_latency);
    REQUIRE(back->jitter == c.link.jitter);
    REQUIRE(back->bandwidth_bytes_per_sec == c.link.bandwidth_bytes_per_sec);
    REQUIRE(c.link.enabled() == (c.name != "loopback"));
  }
  REQUIRE(FormatLinkSpec(LinkEmulation{}) == "none");
}

TEST_CASE("link spec: errors name the value and what was wrong", "[dsm][link]") {
  struct Case {
    const char* spec;
    const char* says;
  };
  const Case cases[] = {
      {"wifi7", "'wifi7' is not a link class"},
      {"latency=2", "latency '2' is not a duration"},
      {"latency=-1ms", "latency '-1ms' is not a duration"},
      {"jitter=11s", "jitter '11s' is not a duration"},
      {"bandwidth=100", "bandwidth '100' is not a rate"},
      {"bandwidth=0Mbit", "bandwidth '0Mbit' is not a rate"},
      {"bandwidth=fastMbit", "bandwidth 'fastMbit' is not a rate"},
      {"loss=1%", "unknown setting 'loss'"},
      {"latency=1ms,wifi6e", "only the first item names a class"},
  };
  for (const Case& c : cases) {
    INFO(c.spec);
    auto l = ParseLinkSpec(c.spec, "--link");
    REQUIRE_FALSE(l.ok());
    REQUIRE(l.status().code() == absl::StatusCode::kInvalidArgument);
    const std::string msg(l.status().message());
    REQUIRE(msg.find("--link: '") == 0);
    REQUIRE(msg.find(c.says) != std::string::npos);
  }
}

}  // namespace
}  // namespace coalesce::dsm
