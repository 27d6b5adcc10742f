// Where a Linux initrd goes: as high as possible (boot.rst recommends it, and it keeps the initrd away from
// where the decompressor and KASLR want to work), below initrd_addr_max and 4 GiB, in usable RAM, and clear
// of the kernel and of our boot structures.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/boot/address_range.h"
#include "hypervisor/boot/e820_map.h"

namespace coalesce {

// Returns the page-aligned load address. `addr_max` is the highest address the initrd's last byte may use
// (setup header initrd_addr_max). ResourceExhausted when no free RAM range below the limit is big enough.
absl::StatusOr<uint64_t> PlaceInitrd(const std::vector<E820Entry>& e820, uint64_t size, uint64_t addr_max,
                                     const std::vector<AddressRange>& occupied);

}  // namespace coalesce
