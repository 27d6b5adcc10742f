#include "hypervisor/kvm/coalesced_mmio_ring.h"

#include <linux/kvm.h>

#include <cstring>

#include "hypervisor/base/log.h"

namespace coalesce {
namespace {

static_assert(sizeof(kvm_coalesced_mmio) == CoalescedMmioRing::kEntrySize);
static_assert(offsetof(kvm_coalesced_mmio, data) == 16);

// KVM writes the entry, then `last` (after a write barrier); the VMM reads `last`, then the entry, and frees
// the slot by advancing `first` once it is done with it.
uint32_t LoadIndex(const uint8_t* at) { return __atomic_load_n(reinterpret_cast<const uint32_t*>(at), __ATOMIC_ACQUIRE); }
void StoreIndex(uint8_t* at, uint32_t v) { __atomic_store_n(reinterpret_cast<uint32_t*>(at), v, __ATOMIC_RELEASE); }

}  // namespace

bool CoalescedMmioRing::HasWrites() const { return LoadIndex(page_) != LoadIndex(page_ + 4); }

size_t CoalescedMmioRing::Drain(const Replay& replay) {
  absl::MutexLock lock(&mu_);
  uint32_t first = LoadIndex(page_);
  size_t replayed = 0;
  while (true) {
    const uint32_t last = LoadIndex(page_ + 4);
    if (first == last) break;
    if (first >= kEntries || last >= kEntries) {
      ++anomalies_;
      LOG_ERROR_SAMPLED("coalesced MMIO ring: indices %u..%u outside its %u entries; dropped", first, last, kEntries);
      StoreIndex(page_, last < kEntries ? last : 0);
      break;
    }
    const uint8_t* entry = page_ + kHeaderSize + size_t{first} * kEntrySize;
    uint64_t addr;
    uint32_t len;
    std::memcpy(&addr, entry, 8);
    std::memcpy(&len, entry + 8, 4);
    if (len == 0 || len > 8) {
      ++anomalies_;
      LOG_ERROR_SAMPLED("coalesced MMIO ring: a %u-byte write at %#x; dropped", len, addr);
    } else {
      uint8_t data[8];
      std::memcpy(data, entry + 16, len);
      replay(addr, std::span<const uint8_t>(data, len));
      ++replayed;
    }
    first = (first + 1) % kEntries;
    StoreIndex(page_, first);
  }
  return replayed;
}

uint64_t CoalescedMmioRing::anomalies() const {
  absl::MutexLock lock(&mu_);
  return anomalies_;
}

}  // namespace coalesce
