// SignalStopper hands each signal to its callback with the value a queued signal carries (the edge agent's
// reason for stopping a runtime rides on its SIGTERM so), and 0 for a plain one. SIGUSR2 is used: it stops
// nothing, so no grace deadline starts.
#include "hypervisor/base/signal_stopper.h"

#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace coalesce {
namespace {

struct Seen {
  absl::Mutex mu;
  std::vector<std::pair<int, int>> signals ABSL_GUARDED_BY(mu);

  bool AwaitCount(size_t n) {
    absl::MutexLock lock(&mu);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return signals.size() >= n; };
    return mu.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  }
};

TEST_CASE("signal stopper: a queued signal's value reaches the callback, a plain signal's is 0") {
  BlockStopSignals();  // this thread and the stopper's: the signals wait for sigtimedwait
  Seen seen;
  {
    SignalStopper stopper(
        [&seen](int sig, int value) {
          absl::MutexLock lock(&seen.mu);
          seen.signals.emplace_back(sig, value);
        },
        {});
    REQUIRE(::sigqueue(::getpid(), SIGUSR2, sigval{.sival_int = 3}) == 0);
    REQUIRE(seen.AwaitCount(1));
    REQUIRE(::kill(::getpid(), SIGUSR2) == 0);
    REQUIRE(seen.AwaitCount(2));
  }
  absl::MutexLock lock(&seen.mu);
  CHECK(seen.signals[0] == std::pair<int, int>{SIGUSR2, 3});
  CHECK(seen.signals[1] == std::pair<int, int>{SIGUSR2, 0});
}

}  // namespace
}  // namespace coalesce
