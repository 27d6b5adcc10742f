// Sampled logging: which occurrences of a guest-triggerable event reach the log.
#include <catch2/catch.hpp>

#include <vector>

#include "hypervisor/base/log.h"

TEST_CASE("a sampled event logs its first eight occurrences, then only powers of two") {
  std::vector<uint64_t> logged;
  for (uint64_t n = 1; n <= 1100; ++n) {
    if (coalesce::LogThisOccurrence(n)) logged.push_back(n);
  }
  CHECK(logged == std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, 128, 256, 512, 1024});
  CHECK(coalesce::LogThisOccurrence(uint64_t{1} << 63));
  CHECK_FALSE(coalesce::LogThisOccurrence((uint64_t{1} << 63) + 1));
}
