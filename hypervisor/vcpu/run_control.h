// The VM's run/stop state on one node, shared by every vCPU thread and device: the first Stop() wins and
// decides the exit status and the reason the launcher prints. It also holds the node's pause flag: while it is
// set, every vCPU thread waits at its pause gate (hypervisor/vcpu/pause_gate.h).
#pragma once

#include <atomic>
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

  // Sets or clears the pause flag. Setting it only asks: the vCPU threads see it at their next exit boundary
  // (pause_gate.h kicks them there and waits). Clearing it wakes every thread waiting at its gate.
  void SetPaused(bool paused);
  // Read at every exit by every vCPU thread: an atomic, no lock.
  [[nodiscard]] bool paused() const { return paused_fast_.load(std::memory_order_acquire); }
  // Blocks while the flag is set and the VM does not stop, at most `timeout`.
  void WaitWhilePaused(absl::Duration timeout) const;

 private:
  bool NotPausedOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !paused_ || stopped_; }

  mutable absl::Mutex mu_;
  std::atomic<bool> paused_fast_{false};  // paused_, for the vCPU threads' per-exit check
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int exit_status_ ABSL_GUARDED_BY(mu_) = 0;
  std::string reason_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> hooks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace coalesce
