#include <catch2/catch.hpp>

#include "edge_monitor/edge_flag.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/vcpu_list.h"

namespace coalesce {
namespace {

using Ids = std::vector<uint32_t>;

TEST_CASE("ParseVcpuList reads ids, ranges and mixes", "[vcpu_list]") {
  CHECK(*ParseVcpuList("2,3") == Ids{2, 3});
  CHECK(*ParseVcpuList("2-3") == Ids{2, 3});
  CHECK(*ParseVcpuList("1,3-5") == Ids{1, 3, 4, 5});
  CHECK(*ParseVcpuList("7") == Ids{7});
  CHECK(*ParseVcpuList("5, 0-1") == Ids{5, 0, 1});
  CHECK(*ParseVcpuList("254") == Ids{254});
}

TEST_CASE("ParseVcpuList names the bad item", "[vcpu_list]") {
  auto message = [](const char* text) { return std::string(ParseVcpuList(text).status().message()); };
  CHECK_THAT(message("1,x"), Catch::Contains("'x' is not a vCPU id"));
  CHECK_THAT(message("2,2"), Catch::Contains("vCPU 2 is listed twice"));
  CHECK_THAT(message("1-3,3"), Catch::Contains("vCPU 3 is listed twice"));
  CHECK_THAT(message("5-3"), Catch::Contains("range '5-3' runs backwards"));
  CHECK_THAT(message("1,,2"), Catch::Contains("empty item"));
  CHECK_THAT(message("255"), Catch::Contains("out of range"));
  CHECK_THAT(message(""), Catch::Contains("empty"));
  CHECK_FALSE(ParseVcpuList("-1").ok());
  CHECK_FALSE(ParseVcpuList("1-").ok());
  CHECK_FALSE(ParseVcpuList("1--2").ok());
  CHECK_FALSE(ParseVcpuList("+1").ok());
}

TEST_CASE("FormatVcpuList compacts ranges", "[vcpu_list]") {
  CHECK(FormatVcpuList({5, 1, 3, 4}) == "1,3-5");
  CHECK(FormatVcpuList({0, 1, 2, 3}) == "0-3");
  CHECK(FormatVcpuList({2}) == "2");
  CHECK(FormatVcpuList({}).empty());
}

TEST_CASE("ParseHostPort accepts names, IPv4 and bracketed IPv6", "[host_port]") {
  auto v4 = ParseHostPort("127.0.0.1:7001");
  REQUIRE(v4.ok());
  CHECK(v4->host == "127.0.0.1");
  CHECK(v4->port == 7001);
  auto name = ParseHostPort("edge-1.lan:80");
  REQUIRE(name.ok());
  CHECK(name->host == "edge-1.lan");
  auto v6 = ParseHostPort("[::1]:7001");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->ToString() == "[::1]:7001");
  CHECK(ParseHostPort("0.0.0.0:0", "--listen", /*allow_port_zero=*/true).ok());
}

TEST_CASE("ParseHostPort rejects malformed addresses", "[host_port]") {
  for (const char* text : {"127.0.0.1", "127.0.0.1:", ":7001", "127.0.0.1:70000", "127.0.0.1:0", "300.1.1.1:1",
                           "::1:7001", "[::1]7001", "[nope]:1", "bad host:1", "-x:1", "a..b:1", "h:12a"}) {
    INFO(text);
    CHECK_FALSE(ParseHostPort(text).ok());
  }
  CHECK_THAT(std::string(ParseHostPort("nohost", "edge[0].address").status().message()),
             Catch::StartsWith("edge[0].address: 'nohost' is not host:port"));
}

TEST_CASE("ParseEdgeFlag splits ADDR=LIST", "[edge_flag]") {
  auto placement = ParseEdgeFlag("127.0.0.1:7001=2,3");
  REQUIRE(placement.ok());
  CHECK(placement->address == "127.0.0.1:7001");
  CHECK(placement->vcpus == Ids{2, 3});
  CHECK(ParseEdgeFlag("[::1]:7001=1,3-5")->vcpus == Ids{1, 3, 4, 5});

  auto no_list = ParseEdgeFlag("127.0.0.1:7001");
  REQUIRE_FALSE(no_list.ok());
  CHECK_THAT(std::string(no_list.status().message()), Catch::Contains("expected ADDR=LIST"));
  auto bad_addr = ParseEdgeFlag("127.0.0.1=2");
  REQUIRE_FALSE(bad_addr.ok());
  CHECK_THAT(std::string(bad_addr.status().message()),
             Catch::StartsWith("--edge '127.0.0.1=2': ") && Catch::Contains("not host:port"));
  auto bad_list = ParseEdgeFlag("127.0.0.1:7001=2,x");
  REQUIRE_FALSE(bad_list.ok());
  CHECK_THAT(std::string(bad_list.status().message()), Catch::Contains("'x' is not a vCPU id"));
  CHECK_FALSE(ParseEdgeFlag("127.0.0.1:7001=").ok());
}

}  // namespace
}  // namespace coalesce
