// TimerService: deadlines run in order, Cancel() stops a pending timer, and Stop() (machine teardown) drops
// pending timers, ignores later ones and waits for a callback already running. Assertions are on what ran,
// never on exact timing.
#include "hypervisor/base/timer_service.h"

#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace coalesce {
namespace {

using Clock = TimerService::Clock;
using std::chrono::milliseconds;

// Polls `done` for up to 10 s (the machine may be busy): true once it holds.
template <typename F>
bool Eventually(F done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return done();
}

TEST_CASE("timer service: callbacks run in deadline order") {
  TimerService timers;
  std::mutex mu;
  std::vector<int> order;
  const auto now = Clock::now();
  for (int k : {3, 1, 2}) {
    timers.Schedule(now + milliseconds(20 * k), [&, k] {
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(k);
    });
  }
  REQUIRE(Eventually([&] {
    std::lock_guard<std::mutex> lock(mu);
    return order.size() == 3;
  }));
  CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("timer service: nothing runs while frozen; what came due runs once at thaw") {
  TimerService timers;
  std::atomic<int> ran{0};
  timers.Freeze();
  const auto now = Clock::now();
  timers.Schedule(now, [&] { ran++; });
  timers.Schedule(now + milliseconds(10), [&] { ran++; });
  const auto cancelled = timers.Schedule(now + milliseconds(10), [&] { ran += 100; });
  timers.Cancel(cancelled);
  std::this_thread::sleep_for(milliseconds(100));  // both deadlines pass while frozen
  CHECK(ran.load() == 0);
  timers.Thaw();
  REQUIRE(Eventually([&] { return ran.load() == 2; }));
  std::this_thread::sleep_for(milliseconds(50));
  CHECK(ran.load() == 2);  // each once, the cancelled one never
}

TEST_CASE("timer service: a cancelled timer never runs") {
  TimerService timers;
  std::atomic<int> ran{0};
  auto id = timers.Schedule(Clock::now() + milliseconds(50), [&] { ran++; });
  std::atomic<bool> marker{false};
  timers.Schedule(Clock::now() + milliseconds(100), [&] { marker = true; });
  timers.Cancel(id);
  REQUIRE(Eventually([&] { return marker.load(); }));
  CHECK(ran == 0);
  timers.Cancel(id);  // stale ids are harmless
}

TEST_CASE("timer service: Stop drops pending timers and ignores new ones") {
  TimerService timers;
  std::atomic<int> ran{0};
  timers.Schedule(Clock::now() + milliseconds(30), [&] { ran++; });
  timers.Stop();
  auto late = timers.Schedule(Clock::now(), [&] { ran++; });
  timers.Cancel(late);  // a no-op after Stop, and it must not wait
  std::this_thread::sleep_for(milliseconds(100));
  CHECK(ran == 0);
  timers.Stop();  // idempotent
}

TEST_CASE("timer service: Stop waits for a running callback") {
  TimerService timers;
  std::atomic<bool> entered{false}, finished{false};
  timers.Schedule(Clock::now(), [&] {
    entered = true;
    std::this_thread::sleep_for(milliseconds(100));
    finished = true;
  });
  REQUIRE(Eventually([&] { return entered.load(); }));
  timers.Stop();
  CHECK(finished);
}

TEST_CASE("timer service: a callback may reschedule itself until Stop") {
  TimerService timers;
  std::atomic<int> ticks{0};
  std::function<void()> tick = [&] {
    ticks++;
    timers.Schedule(Clock::now() + milliseconds(1), tick);
  };
  timers.Schedule(Clock::now(), tick);
  REQUIRE(Eventually([&] { return ticks.load() >= 5; }));
  timers.Stop();
  const int at_stop = ticks;
  std::this_thread::sleep_for(milliseconds(50));
  CHECK(ticks == at_stop);
}

}  // namespace
}  // namespace coalesce
