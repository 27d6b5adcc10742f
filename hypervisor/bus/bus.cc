#include "hypervisor/bus/bus.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"

namespace coalesce {

absl::Status Bus::Register(uint64_t base, uint64_t size, BusDevice* device) {
  if (size == 0 || base + size < base) {
    return absl::InvalidArgumentError(absl::StrFormat("%s bus: bad range %#x+%#x for %s", name_, base, size,
                                                      device->name()));
  }
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first < base + size) {
    return absl::AlreadyExistsError(absl::StrFormat("%s bus: %s at [%#x, %#x) overlaps %s at %#x", name_,
                                                    device->name(), base, base + size,
                                                    next->second.device->name(), next->first));
  }
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.size > base) {
      return absl::AlreadyExistsError(absl::StrFormat("%s bus: %s at [%#x, %#x) overlaps %s at %#x", name_,
                                                      device->name(), base, base + size,
                                                      prev->second.device->name(), prev->first));
    }
  }
  ranges_.emplace(base, Range{size, device});
  return absl::OkStatus();
}

BusDevice* Bus::Find(uint64_t addr, uint64_t* offset) const {
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) return nullptr;
  --it;
  if (addr - it->first >= it->second.size) return nullptr;
  *offset = addr - it->first;
  return it->second.device;
}

void Bus::NoteUnclaimed(uint64_t addr, bool write) {
  unclaimed_.fetch_add(1, std::memory_order_relaxed);
  absl::MutexLock lock(&logged_mu_);
  if (logged_.size() < 4096 && logged_.insert(addr).second) {
    LOG_INFO("%s bus: unclaimed %s at %#x", name_, write ? "write" : "read", addr);
  }
}

bool Bus::Read(uint64_t addr, std::span<uint8_t> data) {
  uint64_t offset = 0;
  if (BusDevice* dev = Find(addr, &offset)) {
    dev->Read(offset, data);
    return true;
  }
  std::fill(data.begin(), data.end(), 0xff);
  NoteUnclaimed(addr, false);
  return false;
}

bool Bus::Write(uint64_t addr, std::span<const uint8_t> data) {
  uint64_t offset = 0;
  if (BusDevice* dev = Find(addr, &offset)) {
    dev->Write(offset, data);
    return true;
  }
  NoteUnclaimed(addr, true);
  return false;
}

}  // namespace coalesce
