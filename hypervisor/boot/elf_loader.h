// Copies the PT_LOAD segments of an x86 ELF executable into guest memory at their physical addresses
// (p_paddr), as a Multiboot loader does. ELF32 (EM_386) and ELF64 (EM_X86_64) are accepted; everything
// must lie below `limit` (4 GiB for a 32-bit entry).
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "hypervisor/boot/address_range.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

struct ElfLoadResult {
  uint64_t entry = 0;       // physical: e_entry translated through the segment containing it
  uint64_t lowest = 0;      // lowest loaded physical address
  uint64_t highest_end = 0; // one past the highest loaded byte (bss included)
  bool is_64 = false;
};

// Errors (InvalidArgument): not ELF, wrong class/endianness/machine/type, headers or segments outside the
// file, no loadable segment, a segment outside guest RAM, above `limit`, or overlapping `forbidden`.
absl::StatusOr<ElfLoadResult> LoadElfPhysical(GuestMemory& mem, std::span<const uint8_t> image, uint64_t limit,
                                              AddressRange forbidden);

}  // namespace coalesce
