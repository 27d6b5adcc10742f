// The coalesced MMIO ring drained from a page laid out as KVM fills it (linux/kvm.h): order, wrap-around,
// freed slots, and entries KVM could not have written.
#include "hypervisor/kvm/coalesced_mmio_ring.h"

#include <linux/kvm.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <utility>
#include <vector>

namespace coalesce {
namespace {

// A ring page and KVM's side of it: append at `last`, as coalesced_mmio_write does.
struct KvmSide {
  alignas(4096) uint8_t page[4096] = {};
  uint32_t& first() { return *reinterpret_cast<uint32_t*>(page); }
  uint32_t& last() { return *reinterpret_cast<uint32_t*>(page + 4); }
  void Append(uint64_t addr, std::vector<uint8_t> data) {
    kvm_coalesced_mmio e{};
    e.phys_addr = addr;
    e.len = static_cast<uint32_t>(data.size());
    std::memcpy(e.data, data.data(), std::min<size_t>(data.size(), 8));
    std::memcpy(page + CoalescedMmioRing::kHeaderSize + last() * sizeof(e), &e, sizeof(e));
    last() = (last() + 1) % CoalescedMmioRing::kEntries;
  }
};

using Seen = std::vector<std::pair<uint64_t, std::vector<uint8_t>>>;

TEST_CASE("coalesced MMIO ring: writes replay oldest first and free their slots, across the wrap") {
  CHECK(CoalescedMmioRing::kEntries == 170);  // KVM_COALESCED_MMIO_MAX for a 4 KiB page
  KvmSide kvm;
  CoalescedMmioRing ring(kvm.page);
  CHECK_FALSE(ring.HasWrites());
  kvm.first() = kvm.last() = CoalescedMmioRing::kEntries - 2;  // two slots before the end
  for (uint32_t i = 0; i < 5; ++i) kvm.Append(0xd0000064 + i * 0x1000, {uint8_t(i), 0, 0, 0});
  CHECK(ring.HasWrites());
  Seen seen;
  CHECK(ring.Drain([&](uint64_t a, std::span<const uint8_t> d) { seen.push_back({a, {d.begin(), d.end()}}); }) == 5);
  REQUIRE(seen.size() == 5);
  for (uint32_t i = 0; i < 5; ++i) {
    CHECK(seen[i].first == 0xd0000064 + i * 0x1000);
    CHECK(seen[i].second == std::vector<uint8_t>{uint8_t(i), 0, 0, 0});
  }
  CHECK(kvm.first() == kvm.last());
  CHECK_FALSE(ring.HasWrites());
  CHECK(ring.Drain([&](uint64_t, std::span<const uint8_t>) { FAIL("nothing left"); }) == 0);
}

TEST_CASE("coalesced MMIO ring: an entry KVM could not have written is dropped and counted, the rest replays") {
  KvmSide kvm;
  CoalescedMmioRing ring(kvm.page);
  kvm.Append(0x1000, {1, 2});
  kvm.Append(0x2000, {});
  reinterpret_cast<kvm_coalesced_mmio*>(kvm.page + 8)[1].len = 200;  // longer than the 8-byte data field
  kvm.Append(0x3000, {3});
  Seen seen;
  CHECK(ring.Drain([&](uint64_t a, std::span<const uint8_t> d) { seen.push_back({a, {d.begin(), d.end()}}); }) == 2);
  CHECK(seen == Seen{{0x1000, {1, 2}}, {0x3000, {3}}});
  CHECK(ring.anomalies() == 1);
  kvm.last() = 100000;  // an index past the ring: emptied, not read
  CHECK(ring.Drain([&](uint64_t, std::span<const uint8_t>) { FAIL("not replayed"); }) == 0);
  CHECK(ring.anomalies() == 2);
}

}  // namespace
}  // namespace coalesce
