#include "hypervisor/boot/e820_map.h"

#include <catch2/catch.hpp>

#include "hypervisor/base/platform.h"

namespace coalesce {
namespace {

TEST_CASE("E820 for a small guest: low RAM, the reserved BIOS area, RAM from 1 MiB") {
  E820Map map = E820Map::ForRegions(GuestMemory::Layout(256ULL << 20));
  auto entries = map.Entries();
  REQUIRE(entries.size() == 3);
  CHECK(entries[0] == E820Entry{0, platform::kEbdaStart, E820Type::kRam});
  CHECK(entries[1] == E820Entry{platform::kEbdaStart, platform::kBiosRomEnd - platform::kEbdaStart,
                                E820Type::kReserved});
  CHECK(entries[2] == E820Entry{0x100000, (256ULL << 20) - 0x100000, E820Type::kRam});
  CHECK(map.RamEntries().size() == 2);
}

TEST_CASE("E820 for a guest larger than the PCI hole splits RAM around it") {
  const uint64_t size = 5ULL << 30;
  auto entries = E820Map::ForRegions(GuestMemory::Layout(size)).Entries();
  REQUIRE(entries.size() == 4);
  CHECK(entries[2] == E820Entry{0x100000, kPciHoleStart - 0x100000, E820Type::kRam});
  CHECK(entries[3] == E820Entry{kPciHoleEnd, size - kPciHoleStart, E820Type::kRam});
}

TEST_CASE("E820 reservations carve RAM, later ones win, neighbours of one type merge") {
  E820Map map;
  map.AddRam(0, 0x10000);
  map.AddRam(0x10000, 0x10000);  // adjacent RAM merges
  map.Reserve(0x4000, 0x2000, E820Type::kAcpiReclaimable);
  map.Reserve(0x5000, 0x1000, E820Type::kAcpiNvs);
  map.Reserve(0x30000, 0x1000);  // a reservation outside RAM is still reported
  map.Reserve(0x100, 0);         // empty: ignored
  auto e = map.Entries();
  REQUIRE(e.size() == 5);
  CHECK(e[0] == E820Entry{0, 0x4000, E820Type::kRam});
  CHECK(e[1] == E820Entry{0x4000, 0x1000, E820Type::kAcpiReclaimable});
  CHECK(e[2] == E820Entry{0x5000, 0x1000, E820Type::kAcpiNvs});
  CHECK(e[3] == E820Entry{0x6000, 0x20000 - 0x6000, E820Type::kRam});
  CHECK(e[4] == E820Entry{0x30000, 0x1000, E820Type::kReserved});
}

TEST_CASE("E820 serializes as packed 20-byte little-endian records") {
  E820Map map;
  map.AddRam(0x1000, 0x2000);
  auto bytes = map.ToBytes();
  REQUIRE(bytes.size() == 20);
  CHECK(bytes[1] == 0x10);
  CHECK(bytes[9] == 0x20);
  CHECK(bytes[16] == 1);
  CHECK(bytes[19] == 0);
}

}  // namespace
}  // namespace coalesce
