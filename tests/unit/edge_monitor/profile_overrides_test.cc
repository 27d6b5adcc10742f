#include <catch2/catch.hpp>

#include "edge_monitor/profile_loader.h"
#include "edge_monitor/profile_overrides.h"
#include "edge_monitor/profile_validator.h"

namespace coalesce {
namespace {

using Ids = std::vector<uint32_t>;

Ids HomeIds(const pb::Profile& profile) { return Ids(profile.home().vcpus().begin(), profile.home().vcpus().end()); }
Ids EdgeIds(const pb::Profile& profile, int i) {
  return Ids(profile.edge(i).vcpus().begin(), profile.edge(i).vcpus().end());
}

EdgePlacement Edge(const char* flag) {
  auto placement = ParseEdgeFlag(flag);
  REQUIRE(placement.ok());
  return *placement;
}

TEST_CASE("Flags alone build a profile: --vcpus 4 --edge ADDR=2,3", "[profile][overrides]") {
  pb::Profile profile;
  ProfileOverrides overrides;
  overrides.kernel = "bzImage";
  overrides.initrd = "initrd.gz";
  overrides.memory = "1G";
  overrides.vcpus = 4;
  overrides.edges.push_back(Edge("127.0.0.1:7001=2,3"));
  REQUIRE(ApplyOverrides(overrides, &profile).ok());
  CHECK(profile.guest().kernel() == "bzImage");
  CHECK(profile.guest().vcpus() == 4);
  CHECK(HomeIds(profile) == Ids{0, 1});
  REQUIRE(profile.edge_size() == 1);
  CHECK(profile.edge(0).address() == "127.0.0.1:7001");
  CHECK(EdgeIds(profile, 0) == Ids{2, 3});
  CHECK(ValidateProfile(profile).ok());
}

TEST_CASE("--max-vcpus: absent ids placed on an edge keep their place", "[profile][overrides]") {
  pb::Profile profile;
  ProfileOverrides overrides;
  overrides.kernel = "bzImage";
  overrides.memory = "1G";
  overrides.vcpus = 1;
  overrides.max_vcpus = 3;
  overrides.edges.push_back(Edge("127.0.0.1:7001=2"));
  REQUIRE(ApplyOverrides(overrides, &profile).ok());
  CHECK(profile.guest().max_vcpus() == 3);
  CHECK(HomeIds(profile) == Ids{0});
  REQUIRE(profile.edge_size() == 1);
  CHECK(EdgeIds(profile, 0) == Ids{2});
  CHECK(ValidateProfile(profile).ok());
  // Growing --vcpus over an id an edge holds leaves it there instead of adding it at home too.
  ProfileOverrides grow;
  grow.vcpus = 3;
  REQUIRE(ApplyOverrides(grow, &profile).ok());
  CHECK(HomeIds(profile) == Ids{0, 1});
  CHECK(EdgeIds(profile, 0) == Ids{2});
  CHECK(ValidateProfile(profile).ok());
}

TEST_CASE("--edge moves vCPUs from home and other edges", "[profile][overrides]") {
  auto profile = ParseProfile(
      "guest { kernel: \"k\" memory: \"1G\" vcpus: 4 }\n home { vcpus: [0, 1] }\n"
      "edge { address: \"127.0.0.1:7001\" vcpus: [2, 3] }\n",
      ProfileFormat::kText, "p");
  REQUIRE(profile.ok());
  ProfileOverrides overrides;
  overrides.edges.push_back(Edge("127.0.0.1:7002=1,3"));
  REQUIRE(ApplyOverrides(overrides, &*profile).ok());
  CHECK(HomeIds(*profile) == Ids{0});
  REQUIRE(profile->edge_size() == 2);
  CHECK(EdgeIds(*profile, 0) == Ids{2});
  CHECK(EdgeIds(*profile, 1) == Ids{1, 3});
  CHECK(ValidateProfile(*profile).ok());

  // Moving an edge's last vCPU elsewhere drops that edge.
  ProfileOverrides again;
  again.edges.push_back(Edge("127.0.0.1:7002=2"));
  REQUIRE(ApplyOverrides(again, &*profile).ok());
  REQUIRE(profile->edge_size() == 1);
  CHECK(profile->edge(0).address() == "127.0.0.1:7002");
  CHECK(EdgeIds(*profile, 0) == Ids{1, 3, 2});
  CHECK(ValidateProfile(*profile).ok());
}

TEST_CASE("--vcpus grows at home and shrinks everywhere", "[profile][overrides]") {
  auto profile = ParseProfile(
      "guest { kernel: \"k\" memory: \"1G\" vcpus: 4 }\n home { vcpus: [0, 1] }\n"
      "edge { address: \"127.0.0.1:7001\" vcpus: [2, 3] }\n",
      ProfileFormat::kText, "p");
  REQUIRE(profile.ok());
  pb::Profile grown = *profile;
  ProfileOverrides grow;
  grow.vcpus = 6;
  REQUIRE(ApplyOverrides(grow, &grown).ok());
  CHECK(HomeIds(grown) == Ids{0, 1, 4, 5});
  CHECK(ValidateProfile(grown).ok());

  ProfileOverrides shrink;
  shrink.vcpus = 2;
  REQUIRE(ApplyOverrides(shrink, &*profile).ok());
  CHECK(HomeIds(*profile) == Ids{0, 1});
  CHECK(profile->edge_size() == 0);
  CHECK(ValidateProfile(*profile).ok());
}

TEST_CASE("Conflicting --edge flags are refused", "[profile][overrides]") {
  pb::Profile profile;
  ProfileOverrides overrides;
  overrides.vcpus = 4;
  overrides.edges.push_back(Edge("127.0.0.1:7001=1-2"));
  overrides.edges.push_back(Edge("127.0.0.1:7002=2,3"));
  const absl::Status status = ApplyOverrides(overrides, &profile);
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(std::string(status.message()),
             Catch::Contains("vCPU 2 is given to both --edge 127.0.0.1:7001 and --edge 127.0.0.1:7002"));
}

TEST_CASE("Overrides do not hide a profile's own mistakes", "[profile][overrides]") {
  auto profile = ParseProfile(
      "guest { kernel: \"k\" memory: \"1G\" vcpus: 4 }\n home { vcpus: [0, 1] }\n"
      "edge { address: \"127.0.0.1:7001\" }\n",
      ProfileFormat::kText, "p");
  REQUIRE(profile.ok());
  ProfileOverrides overrides;
  overrides.memory = "2G";
  REQUIRE(ApplyOverrides(overrides, &*profile).ok());
  const absl::Status status = ValidateProfile(*profile);
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(std::string(status.message()), Catch::Contains("edge 127.0.0.1:7001 has no vCPUs"));
  CHECK_THAT(std::string(status.message()), Catch::Contains("vCPUs 2-3 are not placed"));
}

}  // namespace
}  // namespace coalesce
