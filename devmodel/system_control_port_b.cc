#include "devmodel/system_control_port_b.h"

#include <algorithm>

namespace coalesce {

void SystemControlPortB::Read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
  if (offset != 0 || data.empty()) return;
  absl::MutexLock lock(&mu_);
  refresh_ = !refresh_;
  uint8_t value = control_;
  if (refresh_) value |= kRefreshToggle;
  if (pit_->Channel2Output()) value |= kTimer2Output;
  data[0] = value;
}

void SystemControlPortB::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.empty()) return;
  absl::MutexLock lock(&mu_);
  control_ = data[0] & 0x0f;
  pit_->SetChannel2Gate(control_ & kTimer2Gate);
}

}  // namespace coalesce
