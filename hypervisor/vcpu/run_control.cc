#include "hypervisor/vcpu/run_control.h"

namespace coalesce {

void RunControl::Stop(int exit_status, std::string reason) {
  std::vector<std::function<void()>> hooks;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    exit_status_ = exit_status;
    reason_ = std::move(reason);
    hooks = hooks_;
  }
  for (auto& h : hooks) h();
}

bool RunControl::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopped_;
}

bool RunControl::WaitForStop(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&stopped_), timeout);
}

int RunControl::exit_status() const {
  absl::MutexLock lock(&mu_);
  return exit_status_;
}

std::string RunControl::reason() const {
  absl::MutexLock lock(&mu_);
  return reason_;
}

void RunControl::AddStopHook(std::function<void()> hook) {
  absl::MutexLock lock(&mu_);
  hooks_.push_back(std::move(hook));
}

void RunControl::SetPaused(bool paused) {
  absl::MutexLock lock(&mu_);
  paused_ = paused;
  paused_fast_.store(paused, std::memory_order_release);
}

void RunControl::WaitWhilePaused(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(this, &RunControl::NotPausedOrStopping), timeout);
}

}  // namespace coalesce
