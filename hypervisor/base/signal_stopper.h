// Turns SIGINT, SIGTERM and SIGHUP into an orderly VM stop: the signals are blocked in every thread (call
// BlockStopSignals() before any thread starts) and one thread waits for them with sigtimedwait. SIGUSR2 (a status
// report) and SIGPWR (press the guest's power button) are delivered the same way and stop nothing.
//
// An orderly stop must not be able to hang the process: whatever a vCPU, a peer or a device is blocked on, the
// process ends within the grace period of the first stop signal, or at once on a second one, with the given
// exit status and a line naming why (`_exit`: no destructors, which are what may be stuck).
#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace coalesce {

void BlockStopSignals();

class SignalStopper final {
 public:
  struct Deadline {
    int grace_ms = 10'000;      // after the first stop signal
    int forced_exit_status = 1;  // the status of a forced end
    const char* who = "coalesce";
  };
  // `on_signal(signo, value)` runs on the stopper's thread; `value` is a queued signal's value (sigqueue,
  // pidfd_send_signal with SI_QUEUE: the edge agent says so why it stops a runtime), 0 for a plain signal.
  SignalStopper(std::function<void(int, int)> on_signal, Deadline deadline);
  ~SignalStopper();
  SignalStopper(const SignalStopper&) = delete;
  SignalStopper& operator=(const SignalStopper&) = delete;

 private:
  std::function<void(int, int)> on_signal_;
  Deadline deadline_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace coalesce
