// Guest RAM layout with holes (an edge node's memslots around the guest's home-only memory), and the RAM window
// home serves those holes' forwarded accesses through.
#include <catch2/catch.hpp>
#include <algorithm>

#include "devmodel/home_only_memory.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {
namespace {

TEST_CASE("memslots around holes keep every other byte at its file offset", "[guest_memory]") {
  const auto regions = GuestMemory::Layout(4ULL << 30);  // 3 GiB low, 1 GiB from 4 GiB
  REQUIRE(regions.size() == 2);
  SECTION("no holes: the regions themselves") { CHECK(GuestMemory::CarveHoles(regions, {}).size() == 2); }
  SECTION("a hole inside the low region, one at the start of the high one") {
    const std::pair<uint64_t, uint64_t> holes[] = {{0x1000000, 0x1010000}, {1ULL << 32, (1ULL << 32) + 0x2000}};
    const auto slots = GuestMemory::CarveHoles(regions, holes);
    REQUIRE(slots.size() == 3);
    CHECK(slots[0].guest_phys == 0);
    CHECK(slots[0].size == 0x1000000);
    CHECK(slots[0].file_offset == 0);
    CHECK(slots[1].guest_phys == 0x1010000);
    CHECK(slots[1].size == kPciHoleStart - 0x1010000);
    CHECK(slots[1].file_offset == 0x1010000);
    CHECK(slots[2].guest_phys == (1ULL << 32) + 0x2000);
    CHECK(slots[2].size == (1ULL << 30) - 0x2000);
    CHECK(slots[2].file_offset == kPciHoleStart + 0x2000);
  }
  SECTION("a hole to the end of a region, and two holes in a row") {
    const std::pair<uint64_t, uint64_t> holes[] = {
        {0x1000, 0x2000}, {0x3000, 0x4000}, {kPciHoleStart - 0x1000, kPciHoleStart}};
    const auto slots = GuestMemory::CarveHoles(regions, holes);
    REQUIRE(slots.size() == 4);
    CHECK(slots[0].size == 0x1000);
    CHECK(slots[1].guest_phys == 0x2000);
    CHECK(slots[1].size == 0x1000);
    CHECK(slots[2].guest_phys == 0x4000);
    CHECK(slots[2].guest_phys + slots[2].size == kPciHoleStart - 0x1000);
    CHECK(slots[3].guest_phys == 1ULL << 32);
  }
}

TEST_CASE("a guest-physical range's place in the memfd, or why it has none", "[guest_memory]") {
  const auto regions = GuestMemory::Layout(4ULL << 30);
  CHECK(*GuestMemory::FileOffset(regions, 0x1000000, 0x1000) == 0x1000000);
  CHECK(*GuestMemory::FileOffset(regions, (1ULL << 32) + 0x2000, 0x1000) == kPciHoleStart + 0x2000);
  auto across = GuestMemory::FileOffset(regions, kPciHoleStart - 0x1000, 0x2000);  // into the PCI hole
  REQUIRE_FALSE(across.ok());
  CHECK_THAT(std::string(across.status().message()), Catch::Contains("is not RAM"));
}

TEST_CASE("the hotplug area: 1 GiB-aligned above the boot RAM, after it in the memfd, not boot RAM", "[guest_memory]") {
  CHECK(GuestMemory::HotplugBase(256ULL << 20) == 4ULL << 30);  // under the PCI hole: from 4 GiB
  CHECK(GuestMemory::HotplugBase(3ULL << 30) == 4ULL << 30);
  CHECK(GuestMemory::HotplugBase((3ULL << 30) + 4096) == 5ULL << 30);  // one page above 4 GiB: the next GiB
  CHECK(GuestMemory::HotplugBase(5ULL << 30) == 6ULL << 30);           // ends at 6 GiB exactly
  const auto regions = GuestMemory::Layout(256ULL << 20, 384ULL << 20);
  REQUIRE(regions.size() == 2);
  CHECK(regions[1].guest_phys == 4ULL << 30);
  CHECK(regions[1].size == 384ULL << 20);
  CHECK(regions[1].file_offset == 256ULL << 20);
  CHECK(*GuestMemory::FileOffset(regions, (4ULL << 30) + 0x1000, 0x1000) == (256ULL << 20) + 0x1000);

  auto mem = GuestMemory::Create(64ULL << 20, 256ULL << 20);
  REQUIRE(mem.ok());
  CHECK(mem->size() == 320ULL << 20);  // the memfd holds both
  CHECK(mem->boot_size() == 64ULL << 20);
  CHECK(mem->hotplug_size() == 256ULL << 20);
  CHECK(mem->boot_ram().size() == 1);
  CHECK(mem->regions().size() == 2);
  const uint8_t word[4] = {0xde, 0xad, 0xbe, 0xef};
  REQUIRE(mem->Write((4ULL << 30) + (200ULL << 20), word).ok());
  CHECK(std::equal(word, word + 4, mem->host_base() + (64ULL << 20) + (200ULL << 20)));
  CHECK(!GuestMemory::Create(64ULL << 20, 100ULL << 20).ok());          // not whole 128 MiB slots
  CHECK(!GuestMemory::Create(64ULL << 20, 257 * (128ULL << 20)).ok());  // over 256 slots
}

TEST_CASE("home-only memory: forwarded accesses read and write the guest's RAM", "[guest_memory]") {
  auto mem = GuestMemory::Create(64ULL << 20);
  REQUIRE(mem.ok());
  HomeOnlyMemory window(&*mem, 0x1000000);
  const uint8_t value[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  window.Write(0x10, value);
  uint8_t back[8] = {};
  REQUIRE(mem->Read(0x1000010, back).ok());
  CHECK(std::equal(std::begin(value), std::end(value), std::begin(back)));
  const uint8_t word[4] = {0xEF, 0xBE, 0xAD, 0xDE};
  REQUIRE(mem->Write(0x1000020, word).ok());
  uint8_t got[4] = {};
  window.Read(0x20, got);
  CHECK(LoadLe(got) == 0xDEADBEEF);
}

}  // namespace
}  // namespace coalesce
