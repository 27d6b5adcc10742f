// The VM's run/stop state, shared by every vCPU thread and device: the first Stop() wins and decides the
// exit status and the reason the launcher prints.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace coalesce {

class RunControl final {
 public:
  // Stops the VM with `exit_status` (the launcher's exit code) and a human-readable reason. Later calls are
  // ignored. Runs every stop hook (which kick vCPU threads) outside the lock.
  void Stop(int exit_status, std::string reason);
  [[nodiscard]] bool stopping() const;
  // Blocks until Stop() has been called; false on timeout.
  bool WaitForStop(absl::Duration timeout = absl::InfiniteDuration()) const;
  [[nodiscard]] int exit_status() const;
  [[nodiscard]] std::string reason() const;
  // Registered during build, before any vCPU runs.
  void AddStopHook(std::function<void()> hook);

 private:
  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int exit_status_ ABSL_GUARDED_BY(mu_) = 0;
  std::string reason_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> hooks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace coalesce
