#include "hypervisor/machine/dsm_dma_guard.h"

#include "absl/strings/str_format.h"
#include "dsm/wire_format.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {

// The DSM's unit of coherence is the guest's page: a DMA range becomes DSM page indices by this division.
static_assert(platform::kPageSize == dsm::kPageSize);

absl::StatusOr<std::pair<uint64_t, uint64_t>> DsmDmaGuard::PageRange(uint64_t gpa, uint64_t len) const {
  for (const MemoryRegion& r : memory_->regions()) {
    if (gpa >= r.guest_phys && len <= r.size && gpa - r.guest_phys <= r.size - len) {
      const uint64_t first = r.file_offset + (gpa - r.guest_phys);
      return std::make_pair(first / platform::kPageSize, (first + len + platform::kPageSize - 1) / platform::kPageSize);
    }
  }
  return absl::OutOfRangeError(absl::StrFormat("[%#x, +%u) is not guest RAM", gpa, len));
}

absl::Status DsmDmaGuard::Acquire(uint64_t gpa, uint64_t len) {
  dsm::DsmNode* node = dsm_();
  if (node == nullptr) return absl::OkStatus();  // no data plane: all memory is here
  ASSIGN_OR_RETURN(auto range, PageRange(gpa, len));
  for (uint64_t p = range.first; p < range.second; ++p) {
    if (absl::Status st = node->PinPage(p); !st.ok()) {
      for (uint64_t q = range.first; q < p; ++q) node->UnpinPage(q);
      return st;
    }
  }
  return absl::OkStatus();
}

void DsmDmaGuard::Release(uint64_t gpa, uint64_t len) {
  dsm::DsmNode* node = dsm_();
  if (node == nullptr) return;
  absl::StatusOr<std::pair<uint64_t, uint64_t>> range = PageRange(gpa, len);
  if (!range.ok()) return;
  for (uint64_t p = range->first; p < range->second; ++p) node->UnpinPage(p);
}

}  // namespace coalesce
