// The guest's physical memory map as the BIOS E820 call would report it. One list feeds the Linux zero page,
// the Multiboot memory map and fw_cfg's "etc/e820", so every consumer sees the same machine.
#pragma once

#include <cstdint>
#include <vector>

#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

enum class E820Type : uint32_t {
  kRam = 1,
  kReserved = 2,
  kAcpiReclaimable = 3,
  kAcpiNvs = 4,
};

struct E820Entry {
  uint64_t addr;
  uint64_t size;
  E820Type type;
  friend bool operator==(const E820Entry&, const E820Entry&) = default;
};

class E820Map final {
 public:
  // RAM from `regions`, minus the legacy BIOS area [platform::kEbdaStart, platform::kBiosRomEnd) which is
  // reserved (the EBDA, VGA hole and BIOS ROM window; our ACPI tables live there too).
  static E820Map ForRegions(const std::vector<MemoryRegion>& regions);

  void AddRam(uint64_t addr, uint64_t size);
  // Reserved-type ranges win over RAM wherever they overlap (later reservations win over earlier ones).
  void Reserve(uint64_t addr, uint64_t size, E820Type type = E820Type::kReserved);

  // Sorted by address, non-overlapping, adjacent ranges of one type merged, empty ranges dropped.
  [[nodiscard]] std::vector<E820Entry> Entries() const;
  // The usable-RAM entries of Entries().
  [[nodiscard]] std::vector<E820Entry> RamEntries() const;
  // Entries() as packed little-endian {u64 addr, u64 size, u32 type} records (boot_params and fw_cfg format).
  [[nodiscard]] std::vector<uint8_t> ToBytes() const;

 private:
  struct Range {
    uint64_t begin;
    uint64_t end;  // exclusive; ranges never wrap (clamped to 2^64-1)
    E820Type type;
  };
  std::vector<Range> ram_;
  std::vector<Range> reservations_;
};

}  // namespace coalesce
