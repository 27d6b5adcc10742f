#include "hypervisor/vcpu/halt_poll.h"

#include <algorithm>

namespace coalesce {

void HaltPollWindow::Record(absl::Duration halted) {
  if (max_ <= absl::ZeroDuration()) return;
  if (halted <= window_) return;  // the poll caught the wake-up: keep the window
  if (halted > max_) {
    // A long halt: polling would have spent its whole window for nothing.
    window_ = absl::ZeroDuration();
    return;
  }
  // A short halt the poll missed: poll longer next time.
  window_ = std::min(max_, std::max(kGrowStart, window_ * 2));
}

}  // namespace coalesce
