// One thread that runs callbacks at deadlines (steady clock). Emulated timers (LAPIC timer, PIT) schedule
// their next expiry here instead of each owning a thread. Callbacks run on the timer thread without the
// service's lock held, so they may Schedule() again; they must be short.
// Lock order: a device lock may be held while calling Schedule()/Cancel(); a callback takes device locks.
// So a device must not Cancel() a timer while holding the lock its callback takes (Cancel waits for a
// running callback): cancel outside the lock, or tolerate a stale callback by checking a generation.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace coalesce {

class TimerService final {
 public:
  using Clock = std::chrono::steady_clock;
  using TimerId = uint64_t;

  TimerService();
  ~TimerService();
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  // Runs `fn` once at `deadline` on the timer thread. Returns an id for Cancel().
  TimerId Schedule(Clock::time_point deadline, std::function<void()> fn);
  // Ends the timer thread after any running callback; pending timers are dropped and later Schedule()s are
  // ignored. A machine calls this at teardown, once its vCPUs are joined and before the devices whose
  // callbacks would kick them are destroyed. Idempotent; the destructor calls it.
  void Stop();
  // Cancels a timer if it has not started running. Safe to call with a stale id. When it returns, the
  // callback is either cancelled or has finished (unless called from inside that very callback).
  void Cancel(TimerId id);
  // Holds every callback until Thaw(): a paused guest's timers do not tick (as QEMU stops its virtual clock),
  // and a node with paused vCPUs does no timer work. A callback already running completes. Deadlines are kept:
  // those that passed meanwhile run once at Thaw(), and the devices skip the periods they missed, as after a
  // host stall. Schedule() and Cancel() work as usual meanwhile.
  void Freeze();
  void Thaw();

 private:
  void Loop();

  absl::Mutex mu_;
  // Keyed by (deadline, id) so equal deadlines keep insertion order.
  std::map<std::pair<Clock::time_point, TimerId>, std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  std::map<TimerId, Clock::time_point> deadline_of_ ABSL_GUARDED_BY(mu_);
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  TimerId running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool frozen_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id thread_id_;
  std::thread thread_;
};

}  // namespace coalesce
