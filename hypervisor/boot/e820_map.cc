#include "hypervisor/boot/e820_map.h"

#include <algorithm>
#include <iterator>

#include "hypervisor/base/platform.h"

namespace coalesce {
namespace {

uint64_t ClampedEnd(uint64_t addr, uint64_t size) {
  return size > UINT64_MAX - addr ? UINT64_MAX : addr + size;
}

}  // namespace

E820Map E820Map::ForRegions(const std::vector<MemoryRegion>& regions) {
  E820Map map;
  for (const MemoryRegion& r : regions) map.AddRam(r.guest_phys, r.size);
  map.Reserve(platform::kEbdaStart, platform::kBiosRomEnd - platform::kEbdaStart);
  return map;
}

void E820Map::AddRam(uint64_t addr, uint64_t size) {
  if (size != 0) ram_.push_back({addr, ClampedEnd(addr, size), E820Type::kRam});
}

void E820Map::Reserve(uint64_t addr, uint64_t size, E820Type type) {
  if (size != 0) reservations_.push_back({addr, ClampedEnd(addr, size), type});
}

std::vector<E820Entry> E820Map::Entries() const {
  // Sweep over every boundary; each elementary interval takes the type of the last reservation covering it,
  // else RAM if any RAM range covers it, else nothing (a hole).
  std::vector<uint64_t> cuts;
  for (const Range& r : ram_) cuts.insert(cuts.end(), {r.begin, r.end});
  for (const Range& r : reservations_) cuts.insert(cuts.end(), {r.begin, r.end});
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());

  std::vector<E820Entry> out;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    uint64_t begin = cuts[i];
    uint64_t end = cuts[i + 1];
    bool covered = false;
    E820Type type = E820Type::kRam;
    for (const Range& r : ram_) {
      if (r.begin <= begin && end <= r.end) covered = true;
    }
    for (const Range& r : reservations_) {
      if (r.begin <= begin && end <= r.end) {
        covered = true;
        type = r.type;
      }
    }
    if (!covered) continue;
    if (!out.empty() && out.back().type == type && out.back().addr + out.back().size == begin) {
      out.back().size += end - begin;
    } else {
      out.push_back({begin, end - begin, type});
    }
  }
  return out;
}

std::vector<E820Entry> E820Map::RamEntries() const {
  std::vector<E820Entry> all = Entries();
  std::vector<E820Entry> ram;
  std::copy_if(all.begin(), all.end(), std::back_inserter(ram),
               [](const E820Entry& e) { return e.type == E820Type::kRam; });
  return ram;
}

std::vector<uint8_t> E820Map::ToBytes() const {
  std::vector<uint8_t> out;
  auto put = [&out](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  for (const E820Entry& e : Entries()) {
    put(e.addr, 8);
    put(e.size, 8);
    put(static_cast<uint32_t>(e.type), 4);
  }
  return out;
}

}  // namespace coalesce
