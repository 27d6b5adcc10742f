#include "devmodel/home_only_memory.h"

#include <algorithm>

#include "hypervisor/base/log.h"

namespace coalesce {

// An access is 1 to 8 bytes inside the range the bus gave this device, so it is inside guest RAM (checked when
// the range was accepted); a failure here would be a bug, reported and answered with all ones.
void HomeOnlyMemory::Read(uint64_t offset, std::span<uint8_t> data) {
  if (absl::Status st = memory_->Read(base_ + offset, data); !st.ok()) {
    LOG_ERROR_SAMPLED("home-only memory read: %s", st.ToString());
    std::fill(data.begin(), data.end(), 0xFF);
  }
}

void HomeOnlyMemory::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (absl::Status st = memory_->Write(base_ + offset, data); !st.ok()) {
    LOG_ERROR_SAMPLED("home-only memory write: %s", st.ToString());
  }
}

}  // namespace coalesce
