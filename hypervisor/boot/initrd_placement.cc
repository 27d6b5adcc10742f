#include "hypervisor/boot/initrd_placement.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "hypervisor/base/platform.h"

namespace coalesce {

absl::StatusOr<uint64_t> PlaceInitrd(const std::vector<E820Entry>& e820, uint64_t size, uint64_t addr_max,
                                     const std::vector<AddressRange>& occupied) {
  constexpr uint64_t k4GiB = 1ULL << 32;
  const uint64_t limit = std::min(addr_max == UINT64_MAX ? UINT64_MAX : addr_max + 1, k4GiB);

  // Free ranges: RAM below the limit, minus the occupied ranges.
  std::vector<AddressRange> free;
  for (const E820Entry& e : e820) {
    if (e.type != E820Type::kRam || e.addr >= limit) continue;
    free.push_back({e.addr, std::min(e.addr + e.size, limit)});
  }
  for (const AddressRange& o : occupied) {
    std::vector<AddressRange> next;
    for (const AddressRange& f : free) {
      if (o.end <= f.begin || o.begin >= f.end) {
        next.push_back(f);
        continue;
      }
      if (f.begin < o.begin) next.push_back({f.begin, o.begin});
      if (o.end < f.end) next.push_back({o.end, f.end});
    }
    free = std::move(next);
  }

  uint64_t best = 0;
  bool found = false;
  uint64_t largest = 0;
  for (const AddressRange& f : free) {
    largest = std::max(largest, f.end - f.begin);
    if (f.end - f.begin < size) continue;
    uint64_t addr = (f.end - size) & ~(platform::kPageSize - 1);
    if (addr < f.begin) continue;
    if (!found || addr > best) best = addr;
    found = true;
  }
  if (!found) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "initrd too large: %u bytes do not fit in free guest RAM below %#x (largest free range: %u bytes); "
        "give the guest more memory or use a smaller initrd",
        size, limit, largest));
  }
  return best;
}

}  // namespace coalesce
