// The host compare-exchange used on guest RAM: atomic under contention from other threads.
#include <catch2/catch.hpp>
#include <cstring>
#include <thread>
#include <vector>

#include "hypervisor/emul/host_atomics.h"

namespace coalesce {
namespace {

TEST_CASE("HostCompareExchange16 is atomic against concurrent native cmpxchg16b") {
  alignas(16) static uint64_t cell[2] = {0, 0};
  constexpr int kIters = 20000;
  // Each thread increments both halves together with a CAS loop; torn updates would break lo == hi.
  auto worker = [] {
    for (int i = 0; i < kIters; ++i) {
      for (;;) {
        uint8_t old[16], expected[16], desired[16];
        std::memcpy(expected, cell, 16);  // a possibly torn snapshot is fine: the CAS validates it
        uint64_t v[2];
        std::memcpy(v, expected, 16);
        v[0]++;
        v[1]++;
        std::memcpy(desired, v, 16);
        if (HostCompareExchange16(cell, expected, desired, old)) break;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  CHECK(cell[0] == 2u * kIters);
  CHECK(cell[1] == 2u * kIters);
}

TEST_CASE("HostCompareExchange8 reports failure with the current value, also misaligned") {
  alignas(16) uint8_t buf[32] = {};
  uint64_t value = 0x1122334455667788ull, other = 42;
  std::memcpy(buf + 3, &value, 8);
  uint8_t expected[8], desired[8], old[8];
  std::memcpy(expected, &other, 8);
  std::memcpy(desired, &other, 8);
  CHECK(!HostCompareExchange8(buf + 3, expected, desired, old));
  CHECK(std::memcmp(old, &value, 8) == 0);
  std::memcpy(expected, &value, 8);
  CHECK(HostCompareExchange8(buf + 3, expected, desired, old));
  CHECK(std::memcmp(buf + 3, &other, 8) == 0);
}

}  // namespace
}  // namespace coalesce
