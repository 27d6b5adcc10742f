#include "hypervisor/boot/numa_topology.h"

#include <catch2/catch.hpp>

namespace coalesce {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;

TEST_CASE("NUMA: SLIT distances grow with the logarithm of the round trip") {
  CHECK(SlitDistanceForRoundTrip(absl::ZeroDuration()) == 11);  // never 10: that is a domain to itself
  CHECK(SlitDistanceForRoundTrip(absl::Microseconds(2)) == 12);
  CHECK(SlitDistanceForRoundTrip(absl::Microseconds(60)) == 27);
  CHECK(SlitDistanceForRoundTrip(absl::Milliseconds(2)) == 56);
  CHECK(SlitDistanceForRoundTrip(absl::Milliseconds(40)) == 82);
  CHECK(SlitDistanceForRoundTrip(absl::InfiniteDuration()) == 254);  // 255 means unreachable
  CHECK(SlitDistanceForRoundTrip(absl::Microseconds(-5)) == 11);
  uint8_t last = 0;
  for (int us = 1; us < 100000; us = us * 3 / 2 + 1) {
    const uint8_t d = SlitDistanceForRoundTrip(absl::Microseconds(us));
    CHECK(d >= last);
    last = d;
  }
}

TEST_CASE("NUMA: a coalesced placement gives home the rest of the vCPUs and all the RAM") {
  NumaTopology t = TopologyFromPlacement(6, 256 * kMiB, {{{2, 3}}, {{5}}});
  REQUIRE(t.nodes.size() == 3);
  CHECK(t.nodes[0].vcpus == std::vector<uint32_t>{0, 1, 4});
  CHECK(t.nodes[0].memory == 256 * kMiB);
  CHECK(t.nodes[1].vcpus == std::vector<uint32_t>{2, 3});
  CHECK(t.nodes[1].memory == 0);
  CHECK(t.nodes[2].vcpus == std::vector<uint32_t>{5});
  CHECK(t.enabled());
  CHECK(t.distance(0, 0) == 10);
  CHECK(t.distance(0, 2) == kSlitDefaultRemoteDistance);
  CHECK(ValidateNumaTopology(t, 6, 256 * kMiB).ok());
  CHECK(!TopologyFromPlacement(2, 64 * kMiB, {}).enabled());  // one node: a flat machine
}

TEST_CASE("NUMA: a memory edge's domain is its share of boot RAM, above home's allowance") {
  // 256M guest, home keeps 160M; edge 1 runs vCPU 1; edges 2 and 3 lend 64M each: 64M and the last 32M.
  const std::vector<MemoryShare> shares = MemoryEdgeShares(256 * kMiB, 160 * kMiB, {0, 64 * kMiB, 64 * kMiB});
  REQUIRE(shares.size() == 3);
  CHECK(shares[0].length == 0);
  CHECK(shares[1].offset == 160 * kMiB);
  CHECK(shares[1].length == 64 * kMiB);
  CHECK(shares[2].offset == 224 * kMiB);
  CHECK(shares[2].length == 32 * kMiB);
  NumaTopology t = TopologyFromPlacement(2, 256 * kMiB, {{{1}, 0}, {{}, shares[1].length}, {{}, shares[2].length}});
  REQUIRE(t.nodes.size() == 4);
  CHECK(t.nodes[0].vcpus == std::vector<uint32_t>{0});
  CHECK(t.nodes[0].memory == 160 * kMiB);
  CHECK(t.nodes[2].vcpus.empty());
  CHECK(t.nodes[2].memory == 64 * kMiB);
  CHECK(t.nodes[3].memory == 32 * kMiB);
  CHECK(ValidateNumaTopology(t, 2, 256 * kMiB).ok());
  // The SRAT's ranges start where MemoryEdgeShares says: home's 160M from the bottom, then edge 2's, edge 3's.
  const std::vector<MemoryRegion> ram = {{0, 256 * kMiB, 0}};
  std::vector<NumaMemoryRange> ranges = NumaMemoryRanges(t, ram);
  REQUIRE(ranges.size() == 3);
  CHECK(ranges[1].base == shares[1].offset);
  CHECK(ranges[1].domain == 2);
  CHECK(ranges[2].base == shares[2].offset);
  CHECK(ranges[2].domain == 3);

  // No allowance, or one that holds all of the RAM: home names every page, the edges none.
  for (uint64_t allowance : {uint64_t{0}, 256 * kMiB, 512 * kMiB}) {
    for (const MemoryShare& s : MemoryEdgeShares(256 * kMiB, allowance, {64 * kMiB})) CHECK(s.length == 0);
  }
  // Edges that lend too little: the rest stays with home, at the bottom.
  const std::vector<MemoryShare> short_shares = MemoryEdgeShares(256 * kMiB, 128 * kMiB, {64 * kMiB});
  CHECK(short_shares[0].offset == 192 * kMiB);
  CHECK(short_shares[0].length == 64 * kMiB);
  // A lent size that is not whole pages counts its whole pages.
  CHECK(MemoryEdgeShares(256 * kMiB, 128 * kMiB, {4096 * 3 + 100})[0].length == 4096 * 3);
}

TEST_CASE("NUMA: measured round trips set the distances; edge to edge takes the slower link") {
  NumaTopology t = TopologyFromPlacement(3, 64 * kMiB, {{{1}}, {{2}}});
  SetDistancesFromHomeRoundTrips(t, {absl::ZeroDuration(), absl::Microseconds(60), absl::Milliseconds(2)});
  CHECK(t.distance(0, 1) == 27);
  CHECK(t.distance(1, 0) == 27);
  CHECK(t.distance(0, 2) == 56);
  CHECK(t.distance(1, 2) == 56);
  CHECK(t.distance(2, 1) == 56);
  CHECK(t.distance(1, 1) == 10);
  CHECK(ValidateNumaTopology(t, 3, 64 * kMiB).ok());
}

TEST_CASE("NUMA: spare domains for edges attached later stand at the farthest measured edge's distance") {
  NumaTopology t = TopologyFromPlacement(3, 64 * kMiB, {{{1}}, {{2}}});
  AddSpareDomains(t, kSlitDefaultRemoteDistance);
  REQUIRE(t.nodes.size() == 5);
  CHECK((t.nodes[3].spare && t.nodes[4].spare && !t.nodes[2].spare));
  CHECK(t.nodes[3].vcpus.empty());
  CHECK(t.nodes[3].memory == 0);
  CHECK(ValidateNumaTopology(t, 3, 64 * kMiB).ok());
  SetDistancesFromHomeRoundTrips(t, {absl::ZeroDuration(), absl::Microseconds(60), absl::Milliseconds(2)});
  CHECK(t.distance(0, 1) == 27);
  CHECK(t.distance(0, 3) == 56);  // the 2 ms edge's
  CHECK(t.distance(4, 0) == 56);
  CHECK(t.distance(3, 4) == 56);
  CHECK(t.distance(1, 3) == 56);
  CHECK(t.distance(4, 4) == 10);
  // Never past the 64 domains the tables allow.
  NumaTopology full;
  full.nodes.resize(kMaxNumaNodes - 1, NumaNode{{0}, 0});
  SetUniformDistances(full, 20);
  AddSpareDomains(full, 20);
  CHECK(full.nodes.size() == kMaxNumaNodes);
  CHECK(full.distances.size() == kMaxNumaNodes * kMaxNumaNodes);
}

TEST_CASE("NUMA: topologies that do not fit the guest are refused, naming the problem") {
  auto two = [](std::vector<uint32_t> a, uint64_t ma, std::vector<uint32_t> b, uint64_t mb) {
    NumaTopology t;
    t.nodes = {{std::move(a), ma}, {std::move(b), mb}};
    SetUniformDistances(t, 20);
    return t;
  };
  auto message = [](const absl::Status& st) { return std::string(st.message()); };
  CHECK(ValidateNumaTopology(two({0, 1}, 32 * kMiB, {2, 3}, 32 * kMiB), 4, 64 * kMiB).ok());
  CHECK_THAT(message(ValidateNumaTopology(two({0, 1}, 32 * kMiB, {1, 2}, 32 * kMiB), 3, 64 * kMiB)),
             Catch::Contains("vCPU 1 is in domains 0 and 1"));
  CHECK_THAT(message(ValidateNumaTopology(two({0}, 32 * kMiB, {2}, 32 * kMiB), 3, 64 * kMiB)),
             Catch::Contains("vCPU 1 is in no domain"));
  CHECK_THAT(message(ValidateNumaTopology(two({0}, 32 * kMiB, {7}, 32 * kMiB), 2, 64 * kMiB)),
             Catch::Contains("vCPU 7 does not exist"));
  CHECK_THAT(message(ValidateNumaTopology(two({0}, 32 * kMiB, {1}, 16 * kMiB), 2, 64 * kMiB)),
             Catch::Contains("hold 50331648 bytes of memory, the guest has 67108864"));
  CHECK_THAT(message(ValidateNumaTopology(two({0}, 62 * kMiB, {1}, 2 * kMiB), 2, 64 * kMiB)),
             Catch::Contains("at least 4M"));
  CHECK_THAT(message(ValidateNumaTopology(two({0}, 64 * kMiB - 4096 + 1, {1}, 4095), 2, 64 * kMiB)),
             Catch::Contains("not a multiple of 4 KiB"));
  CHECK_THAT(message(ValidateNumaTopology(two({0, 1}, 64 * kMiB, {}, 0), 2, 64 * kMiB)),
             Catch::Contains("neither vCPUs nor memory"));
  NumaTopology bad = two({0}, 32 * kMiB, {1}, 32 * kMiB);
  bad.distances[1] = 10;
  CHECK_THAT(message(ValidateNumaTopology(bad, 2, 64 * kMiB)), Catch::Contains("distance 10 from domain 0 to 1"));
  bad.distances[1] = 255;
  CHECK_THAT(message(ValidateNumaTopology(bad, 2, 64 * kMiB)), Catch::Contains("distance 255"));
  bad.distances.pop_back();
  CHECK_THAT(message(ValidateNumaTopology(bad, 2, 64 * kMiB)), Catch::Contains("3 distances for 2 domains"));
}

TEST_CASE("NUMA: domains take RAM in order from the bottom, across the PCI hole") {
  // 4 GiB of RAM: 3 GiB below the hole, 1 GiB from 4 GiB up.
  const std::vector<MemoryRegion> ram = GuestMemory::Layout(4096 * kMiB);
  REQUIRE(ram.size() == 2);
  NumaTopology t;
  t.nodes = {{{0}, 2048 * kMiB}, {{1}, 2048 * kMiB}};
  SetUniformDistances(t, 20);
  REQUIRE(ValidateNumaTopology(t, 2, 4096 * kMiB).ok());
  const std::vector<NumaMemoryRange> r = NumaMemoryRanges(t, ram);
  REQUIRE(r.size() == 3);
  CHECK((r[0].base == 0 && r[0].length == 2048 * kMiB && r[0].domain == 0));
  CHECK((r[1].base == 2048 * kMiB && r[1].length == 1024 * kMiB && r[1].domain == 1));
  CHECK((r[2].base == kPciHoleEnd && r[2].length == 1024 * kMiB && r[2].domain == 1));
  // A domain of CPUs only owns no range.
  NumaTopology c = TopologyFromPlacement(2, 4096 * kMiB, {{{1}}});
  const std::vector<NumaMemoryRange> rc = NumaMemoryRanges(c, ram);
  REQUIRE(rc.size() == 2);
  CHECK((rc[0].domain == 0 && rc[1].domain == 0 && rc[1].base == kPciHoleEnd));
}

}  // namespace
}  // namespace coalesce
