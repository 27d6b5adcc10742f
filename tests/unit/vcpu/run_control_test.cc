#include "hypervisor/vcpu/run_control.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

namespace coalesce {
namespace {

TEST_CASE("the first Stop wins and runs the hooks once") {
  RunControl rc;
  int hooks = 0;
  rc.AddStopHook([&] { hooks++; });
  CHECK_FALSE(rc.stopping());
  CHECK_FALSE(rc.WaitForStop(absl::Milliseconds(1)));
  std::thread t([&] { rc.Stop(6, "first"); });
  CHECK(rc.WaitForStop(absl::Seconds(10)));
  t.join();
  rc.Stop(0, "second");
  CHECK(rc.exit_status() == 6);
  CHECK(rc.reason() == "first");
  CHECK(hooks == 1);
}

TEST_CASE("the pause flag holds waiters until it clears or the VM stops") {
  RunControl rc;
  CHECK_FALSE(rc.paused());
  // Not paused: no wait at all.
  const absl::Time t0 = absl::Now();
  rc.WaitWhilePaused(absl::Seconds(10));
  CHECK(absl::Now() - t0 < absl::Seconds(5));

  rc.SetPaused(true);
  CHECK(rc.paused());
  // Paused: a bounded wait returns at its timeout, still paused.
  const absl::Time t1 = absl::Now();
  rc.WaitWhilePaused(absl::Milliseconds(50));
  CHECK(absl::Now() - t1 >= absl::Milliseconds(50));
  CHECK(rc.paused());

  // Clearing the flag wakes a waiter long before its timeout.
  std::atomic<bool> woke{false};
  std::thread waiter([&] {
    rc.WaitWhilePaused(absl::Seconds(30));
    woke = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_FALSE(woke.load());
  rc.SetPaused(false);
  waiter.join();
  CHECK(woke.load());

  // A stop wakes a waiter too, with the flag still set.
  rc.SetPaused(true);
  std::thread stopped_waiter([&] { rc.WaitWhilePaused(absl::Seconds(30)); });
  rc.Stop(0, "powered off while paused");
  stopped_waiter.join();
  CHECK(rc.paused());
  CHECK(rc.stopping());
}

}  // namespace
}  // namespace coalesce
