#include <catch2/catch.hpp>

#include "edge_monitor/profile_loader.h"
#include "edge_monitor/profile_validator.h"

namespace coalesce {
namespace {

using Catch::Contains;

pb::Profile FromText(const std::string& text) {
  auto profile = ParseProfile(text, ProfileFormat::kText, "test.textproto");
  REQUIRE(profile.ok());
  return *profile;
}

std::string Problems(const std::string& text) {
  const absl::Status status = ValidateProfile(FromText(text));
  if (status.ok()) return "";
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  return std::string(status.message());
}

constexpr const char* kGuest4 = "guest { kernel: \"k\" memory: \"1G\" vcpus: 4 }\n";

TEST_CASE("A complete placement validates", "[profile][validate]") {
  CHECK(Problems(std::string(kGuest4) + "home { vcpus: [0, 1] }\n"
                 "edge { address: \"127.0.0.1:7001\" vcpus: [2, 3] }\n").empty());
  CHECK(Problems(std::string(kGuest4) + "home { vcpus: [0] }\n"
                 "edge { address: \"127.0.0.1:7001\" vcpus: [1] }\n"
                 "edge { address: \"127.0.0.1:7002\" vcpus: [2] }\n"
                 "edge { address: \"[::1]:7003\" vcpus: [3] }\n").empty());
}

TEST_CASE("An emulated link is a class or settings, and a bad one is named", "[profile][validate]") {
  CHECK(Problems(std::string(kGuest4) + "home { vcpus: [0, 1, 2, 3] link: \"5g,jitter=1ms\" }\n").empty());
  CHECK_THAT(Problems(std::string(kGuest4) + "home { vcpus: [0, 1, 2, 3] link: \"bandwidth=lots\" }\n"),
             Contains("home.link: 'bandwidth=lots': bandwidth 'lots' is not a rate"));
}

TEST_CASE("Overlapping vCPUs name the vCPU and both nodes", "[profile][validate]") {
  const std::string problems = Problems(std::string(kGuest4) +
                                        "home { vcpus: [0, 1, 2] }\n"
                                        "edge { name: \"a\" address: \"127.0.0.1:7001\" vcpus: [2, 3] }\n");
  CHECK_THAT(problems, Contains("vCPU 2 is placed more than once: on home and on edge 'a' (127.0.0.1:7001)"));
  // Only that one problem.
  CHECK(problems.find('\n') == std::string::npos);

  const std::string edges = Problems(std::string(kGuest4) +
                                     "home { vcpus: [0, 1] }\n"
                                     "edge { address: \"127.0.0.1:7001\" vcpus: [2, 3] }\n"
                                     "edge { address: \"127.0.0.1:7002\" vcpus: [3] }\n");
  CHECK_THAT(edges, Contains("vCPU 3 is placed more than once: on edge 127.0.0.1:7001 and on edge 127.0.0.1:7002"));
}

TEST_CASE("Missing vCPUs are listed", "[profile][validate]") {
  CHECK_THAT(Problems(std::string(kGuest4) + "home { vcpus: [0] }\n"),
             Contains("vCPUs 1-3 are not placed on any node (guest.vcpus is 4"));
  CHECK_THAT(Problems(std::string(kGuest4) + "home { vcpus: [0, 2] }\n"),
             Contains("vCPUs 1,3 are not placed on any node"));
  CHECK_THAT(Problems(std::string(kGuest4) + "home { vcpus: [0, 1, 2] }\n"),
             Contains("vCPU 3 is not placed on any node"));
}

TEST_CASE("vCPUs beyond the count are named with their node", "[profile][validate]") {
  CHECK_THAT(Problems(std::string(kGuest4) + "home { vcpus: [0, 1, 2, 3] }\n"
                      "edge { address: \"127.0.0.1:7001\" vcpus: [4] }\n"),
             Contains("edge 127.0.0.1:7001: vCPU 4 does not exist (guest.vcpus is 4, ids are 0..3)"));
}

TEST_CASE("max_vcpus: absent ids may be placed once, need not be, and bound the ids", "[profile][validate]") {
  const std::string guest = "guest { kernel: \"k\" memory: \"1G\" vcpus: 2 max_vcpus: 4 }\n";
  CHECK(Problems(guest + "home { vcpus: [0, 1] }\n").empty());
  CHECK(Problems(guest + "home { vcpus: [0, 1] }\nedge { address: \"127.0.0.1:7001\" vcpus: [3] }\n").empty());
  CHECK_THAT(Problems(guest + "home { vcpus: [0, 1] }\nedge { address: \"127.0.0.1:7001\" vcpus: [4] }\n"),
             Contains("vCPU 4 does not exist (guest.max_vcpus is 4, ids are 0..3)"));
  CHECK_THAT(Problems(guest + "home { vcpus: [0, 1, 3] }\nedge { address: \"127.0.0.1:7001\" vcpus: [3] }\n"),
             Contains("vCPU 3 is placed more than once"));
  CHECK_THAT(Problems("guest { kernel: \"k\" memory: \"1G\" vcpus: 2 max_vcpus: 1 } home { vcpus: [0, 1] }"),
             Contains("guest.max_vcpus: 1 is out of range (guest.vcpus 2..255)"));
}

TEST_CASE("max_memory: the boot RAM plus whole 128M hotplug slots, at most 256 of them", "[profile][validate]") {
  auto guest = [](const std::string& max) {
    return "guest { kernel: \"k\" memory: \"256M\" vcpus: 1 max_memory: \"" + max + "\" } home { vcpus: [0] }";
  };
  CHECK(Problems(guest("768M")).empty());
  CHECK(Problems(guest("256M")).empty());  // no slot: no hotplug
  CHECK(Problems(guest("32G")).empty());   // 254 slots
  CHECK_THAT(Problems(guest("300M")), Contains("guest.max_memory: '300M' must be guest.memory (256M) plus whole 128M "
                                               "slots, at most 256 of them (32G)"));
  CHECK_THAT(Problems(guest("128M")), Contains("guest.max_memory: '128M' must be guest.memory"));
  CHECK_THAT(Problems(guest("40G")), Contains("at most 256 of them"));
  CHECK_THAT(Problems(guest("lots")), Contains("guest.max_memory: 'lots' is not a size"));
}

TEST_CASE("The boot vCPU stays at home", "[profile][validate]") {
  CHECK_THAT(Problems(std::string(kGuest4) + "home { vcpus: [1, 2, 3] }\n"
                      "edge { address: \"127.0.0.1:7001\" vcpus: [0] }\n"),
             Contains("vCPU 0 (the boot CPU) must run at home, not on edge 127.0.0.1:7001"));
}

TEST_CASE("Guest fields are checked", "[profile][validate]") {
  CHECK_THAT(Problems("guest { kernel: \"k\" memory: \"lots\" vcpus: 1 } home { vcpus: 0 }"),
             Contains("guest.memory: 'lots' is not a size"));
  CHECK_THAT(Problems("guest { kernel: \"k\" memory: \"1000\" vcpus: 1 } home { vcpus: 0 }"),
             Contains("not a multiple of 4K"));
  CHECK_THAT(Problems("guest { kernel: \"k\" vcpus: 1 } home { vcpus: 0 }"), Contains("guest.memory is missing"));
  CHECK_THAT(Problems("guest { kernel: \"k\" memory: \"1G\" } home { vcpus: 0 }"), Contains("guest.vcpus is missing"));
  CHECK_THAT(Problems("guest { kernel: \"k\" memory: \"1G\" vcpus: 256 }"),
             Contains("guest.vcpus: 256 is out of range (1..255)"));
  CHECK_THAT(Problems("guest { memory: \"1G\" vcpus: 1 } home { vcpus: 0 }"), Contains("guest.kernel is missing"));
}

TEST_CASE("Edge addresses are checked", "[profile][validate]") {
  CHECK_THAT(Problems(std::string(kGuest4) + "home { vcpus: [0, 1, 2] }\n"
                      "edge { address: \"nowhere\" vcpus: [3] }\n"),
             Contains("edge[0].address: 'nowhere' is not host:port"));
  CHECK_THAT(Problems(std::string(kGuest4) + "home { vcpus: [0, 1, 2] }\n edge { vcpus: [3] }\n"),
             Contains("edge[0].address is missing"));
  CHECK_THAT(Problems(std::string(kGuest4) + "home { vcpus: [0, 1] }\n"
                      "edge { address: \"127.0.0.1:7001\" vcpus: [2] }\n"
                      "edge { address: \"127.0.0.1:7001\" vcpus: [3] }\n"),
             Contains("edge[1] and edge[0] have the same address 127.0.0.1:7001"));
  CHECK_THAT(Problems(std::string(kGuest4) + "home { vcpus: [0, 1, 2, 3] }\n edge { address: \"h:1\" }\n"),
             Contains("edge h:1 has no vCPUs"));
}

TEST_CASE("Policies are range-checked", "[profile][validate]") {
  const std::string base = "guest { kernel: \"k\" memory: \"1G\" vcpus: 1 } home { vcpus: 0 }\n";
  CHECK(Problems(base + "policies { latency_bound_us: 2000 max_edge_memory: \"4G\" memory_only: true }").empty());
  CHECK_THAT(Problems(base + "policies { min_battery_percent: 101 }"), Contains("policies.min_battery_percent"));
  CHECK_THAT(Problems(base + "policies { max_edge_memory: \"x\" }"), Contains("policies.max_edge_memory: 'x'"));
}

TEST_CASE("Every problem is reported, one per line", "[profile][validate]") {
  const std::string problems = Problems("guest { memory: \"x\" vcpus: 3 } home { vcpus: [0, 0] }");
  CHECK_THAT(problems, Contains("guest.memory: 'x'"));
  CHECK_THAT(problems, Contains("guest.kernel is missing"));
  CHECK_THAT(problems, Contains("vCPU 0 is placed more than once: on home and on home"));
  CHECK_THAT(problems, Contains("vCPUs 1-2 are not placed"));
}

}  // namespace
}  // namespace coalesce

namespace coalesce {
namespace {

TEST_CASE("The user's caps on one edge refuse a placement over them, naming the edge and the cap",
          "[profile][validate][policies]") {
  const std::string placement = "home { vcpus: [0, 1] }\nedge { address: \"127.0.0.1:7001\" vcpus: [2, 3] }\n";
  CHECK(Problems(std::string(kGuest4) + placement + "policies { max_edge_vcpus: 2 max_edge_memory: \"1G\" }\n")
            .empty());
  CHECK_THAT(Problems(std::string(kGuest4) + placement + "policies { max_edge_vcpus: 1 }\n"),
             Contains("edge 127.0.0.1:7001: 2 vCPUs, over policies.max_edge_vcpus (1)"));
  CHECK_THAT(Problems(std::string(kGuest4) + placement + "policies { max_edge_memory: \"512M\" }\n"),
             Contains("edge 127.0.0.1:7001: it may come to hold all of guest.memory (1G), over "
                      "policies.max_edge_memory (512M)"));
  CHECK_THAT(Problems(std::string(kGuest4) + placement + "policies { memory_only: true }\n"),
             Contains("policies.memory_only: edge 127.0.0.1:7001 is given vCPUs"));
  // Caps say nothing about a VM on one node.
  CHECK(Problems(std::string(kGuest4) + "home { vcpus: [0, 1, 2, 3] }\npolicies { max_edge_vcpus: 1 }\n").empty());
}

}  // namespace
}  // namespace coalesce

namespace coalesce {
namespace {

TEST_CASE("Memory edges: a home allowance and edges that lend the rest", "[profile][validate][memory]") {
  const std::string guest = "guest { kernel: \"k\" memory: \"1G\" vcpus: 2 }\n";
  const std::string home = "home { vcpus: [0, 1] memory: \"256M\" }\n";
  CHECK(Problems(guest + home + "edge { address: \"127.0.0.1:7001\" memory: \"512M\" }\n"
                 "edge { address: \"127.0.0.1:7002\" memory: \"256M\" }\n").empty());
  CHECK(Problems(guest + home + "edge { address: \"127.0.0.1:7001\" memory: \"768M\" }\n"
                 "policies { memory_only: true }\n").empty());
  CHECK_THAT(Problems(guest + home + "edge { address: \"127.0.0.1:7001\" memory: \"512M\" }\n"),
             Contains("home.memory (256M) keeps 256M of guest.memory (1G) at home, and the memory edges lend 512M: "
                      "at least 768M must be lent"));
  CHECK_THAT(Problems(guest + "home { vcpus: [0, 1] memory: \"1G\" }\nedge { address: \"127.0.0.1:7001\" memory: \"1G\" }\n"),
             Contains("home.memory (1G) is not smaller than guest.memory (1G)"));
  CHECK_THAT(Problems(guest + "home { vcpus: [0, 1] }\nedge { address: \"127.0.0.1:7001\" memory: \"1G\" }\n"),
             Contains("no home.memory"));
  CHECK_THAT(Problems(guest + "home { vcpus: [0] memory: \"256M\" }\n"
                      "edge { address: \"127.0.0.1:7001\" vcpus: [1] memory: \"768M\" }\n"),
             Contains("edge 127.0.0.1:7001 has both vCPUs and memory"));
  CHECK_THAT(Problems(guest + home + "edge { address: \"127.0.0.1:7001\" memory: \"lots\" }\n"),
             Contains("edge[0].memory"));
  CHECK_THAT(Problems(guest + home + "edge { address: \"127.0.0.1:7001\" }\n"),
             Contains("edge 127.0.0.1:7001 has no vCPUs and lends no memory"));
  CHECK_THAT(Problems(guest + home + "edge { address: \"127.0.0.1:7001\" memory: \"768M\" }\n"
                      "policies { max_edge_memory: \"512M\" }\n"),
             Contains("edge 127.0.0.1:7001: lends 768M, over policies.max_edge_memory (512M)"));
}

}  // namespace
}  // namespace coalesce
