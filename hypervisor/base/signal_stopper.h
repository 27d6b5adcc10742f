// Turns SIGINT, SIGTERM and SIGHUP into an orderly VM stop: the signals are blocked in every thread (call
// BlockStopSignals() before any thread starts) and one thread waits for them with sigtimedwait. SIGUSR2 is
// delivered the same way, for a status report that does not stop anything.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace coalesce {

void BlockStopSignals();

class SignalStopper final {
 public:
  // `on_signal(signo)` runs on the stopper's thread.
  explicit SignalStopper(std::function<void(int)> on_signal);
  ~SignalStopper();
  SignalStopper(const SignalStopper&) = delete;
  SignalStopper& operator=(const SignalStopper&) = delete;

 private:
  std::function<void(int)> on_signal_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace coalesce
