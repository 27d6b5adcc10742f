#include "devmodel/reset_control.h"

#include <algorithm>

#include "hypervisor/base/log.h"

namespace coalesce {

void ResetControl::Read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
  if (offset != 0 || data.empty()) return;
  absl::MutexLock lock(&mu_);
  data[0] = value_;
}

void ResetControl::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.empty()) return;
  const uint8_t value = data[0];
  {
    absl::MutexLock lock(&mu_);
    value_ = value & (kSystemReset | kFullReset);  // RST_CPU is self-clearing
  }
  if (value & kResetCpu) {
    LOG_INFO("reset-control: guest requested a %s reset (%#x)", (value & kSystemReset) ? "hard" : "soft", value);
    if (on_reset_) on_reset_();
  }
}

}  // namespace coalesce
