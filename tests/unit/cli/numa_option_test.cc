// `--numa` as users write it (hypervisor/cli/numa_option.h).
#include "hypervisor/cli/numa_option.h"

#include <catch2/catch.hpp>

namespace coalesce {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;

std::string Error(std::string_view text, uint32_t vcpus = 4, uint64_t memory = 256 * kMiB) {
  auto c = ParseNumaSpec(text, "--numa", vcpus, memory);
  return c.ok() ? "accepted" : std::string(c.status().message());
}

TEST_CASE("--numa: auto, off and explicit domains") {
  auto a = ParseNumaSpec("", "--numa", 4, 256 * kMiB);
  REQUIRE(a.ok());
  CHECK(a->mode == NumaMode::kAuto);
  CHECK(ParseNumaSpec("auto", "--numa", 4, 256 * kMiB)->mode == NumaMode::kAuto);
  CHECK(ParseNumaSpec("off", "--numa", 4, 256 * kMiB)->mode == NumaMode::kOff);

  auto e = ParseNumaSpec("cpus=0-1,memory=192M/cpus=2-3,memory=64M", "--numa", 4, 256 * kMiB);
  REQUIRE(e.ok());
  CHECK(e->mode == NumaMode::kExplicit);
  REQUIRE(e->nodes.size() == 2);
  CHECK(e->nodes[0].vcpus == std::vector<uint32_t>{0, 1});
  CHECK(e->nodes[0].memory == 192 * kMiB);
  CHECK(e->nodes[1].vcpus == std::vector<uint32_t>{2, 3});
  CHECK(e->nodes[1].memory == 64 * kMiB);

  // Without memory=: an even split in whole MiB, the last domain taking the rest.
  auto even = ParseNumaSpec("cpus=0/cpus=1/cpus=2", "--numa", 3, 100 * kMiB);
  REQUIRE(even.ok());
  CHECK(even->nodes[0].memory == 33 * kMiB);
  CHECK(even->nodes[1].memory == 33 * kMiB);
  CHECK(even->nodes[2].memory == 34 * kMiB);
  // A domain of CPUs only.
  CHECK(Error("cpus=0-2,memory=256M/cpus=3,memory=0") == "accepted");
}

TEST_CASE("--numa: bad layouts name the domain and the problem") {
  CHECK_THAT(Error("cpus=0-3"), Catch::Contains("one domain is a flat machine"));
  CHECK_THAT(Error("cpus=0-1/memory=128M"), Catch::Contains("domain 1 ('memory=128M'): no cpus=LIST"));
  CHECK_THAT(Error("cpus=0-1/cpus=2-3,speed=9"), Catch::Contains("'speed' is not a key"));
  CHECK_THAT(Error("cpus=0-1,cpus=2/cpus=3"), Catch::Contains("'cpus' is given twice"));
  CHECK_THAT(Error("cpus=0-1/cpus=2-3,memory=lots"), Catch::Contains("domain 1"));
  CHECK_THAT(Error("cpus=0-1/cpus=2-3,memory=lots"), Catch::Contains("not a size"));
  CHECK_THAT(Error("cpus=0-1/cpus=x"), Catch::Contains("domain 1 ('cpus=x')"));
  CHECK_THAT(Error("cpus=0-1,memory=128M/cpus=2-3"), Catch::Contains("memory= on every domain or on none"));
  CHECK_THAT(Error("cpus=0-1,memory=128M/cpus=2-3,memory=64M"),
             Catch::Contains("hold 201326592 bytes of memory, the guest has 268435456"));
  CHECK_THAT(Error("cpus=0-1/cpus=1-3"), Catch::Contains("vCPU 1 is in domains 0 and 1"));
  CHECK_THAT(Error("cpus=0-1/cpus=2"), Catch::Contains("vCPU 3 is in no domain"));
  CHECK_THAT(Error("cpus=0-1/cpus=2-5"), Catch::Contains("vCPU 4 does not exist"));
  CHECK_THAT(Error("cpus=0-1/cpus=2-3", 4, 6 * kMiB), Catch::Contains("at least 4M"));
  CHECK_THAT(Error("cpus=0-1/oops"), Catch::Contains("'oops' is not KEY=VALUE"));
}

}  // namespace
}  // namespace coalesce
