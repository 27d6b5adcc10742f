#include "devmodel/vhost_user/used_index_watch.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace coalesce {
namespace {

TEST_CASE("a used index that moves is claimed once, by whoever comes first") {
  UsedIndexWatch w;
  uint16_t used0 = 0, used1 = 0;  // the idx fields of two used rings; no flags: every move wanted
  CHECK_FALSE(w.AnyWanted());     // nothing watched
  w.Watch(0, {.used_idx = &used0});
  w.Watch(1, {.used_idx = &used1});
  CHECK_FALSE(w.AnyWanted());
  CHECK_FALSE(w.Claim());
  used1 = 1;
  CHECK(w.AnyWanted());
  CHECK(w.ClaimWanted());
  CHECK_FALSE(w.AnyWanted());
  CHECK_FALSE(w.Claim());  // the second claimant (the back end's call) finds nothing new
  used0 = 8;
  used1 = 2;
  CHECK(w.Claim());  // both at once: one claim
  CHECK_FALSE(w.ClaimWanted());
}

TEST_CASE("the back end counts from 0: a stale index in guest memory at start is not taken as claimed") {
  UsedIndexWatch w;
  uint16_t used = 1;  // a driver that did not zero its ring
  w.Watch(0, {.used_idx = &used});
  CHECK(w.AnyWanted());  // the back end's first completion (index 1) must not be skipped
  CHECK(w.Claim());
}

TEST_CASE("the index wraps around at 65536 and still counts as moved") {
  UsedIndexWatch w;
  uint16_t used = 0;
  w.Watch(0, {.used_idx = &used});
  used = 0xffff;
  CHECK(w.Claim());
  used = 0;
  CHECK(w.AnyWanted());
  CHECK(w.ClaimWanted());
}

TEST_CASE("the poller raises only what the driver asks to be interrupted for") {
  uint16_t used = 0, flags = 1, used_event = 0;
  SECTION("VRING_AVAIL_F_NO_INTERRUPT") {
    UsedIndexWatch w;
    w.Watch(0, {.used_idx = &used, .avail_flags = &flags});
    used = 1;
    CHECK_FALSE(w.AnyWanted());   // the driver is polling its ring: no interrupt
    CHECK_FALSE(w.ClaimWanted());
    flags = 0;
    CHECK(w.AnyWanted());
    CHECK(w.ClaimWanted());
    CHECK_FALSE(w.Claim());
  }
  SECTION("used_event under EVENT_IDX, as vring_need_event") {
    UsedIndexWatch w;
    w.Watch(0, {.used_idx = &used, .avail_flags = &flags, .used_event = &used_event});
    used_event = 3;  // "interrupt me once entry 3 is used", i.e. when idx passes 3
    used = 2;
    CHECK_FALSE(w.AnyWanted());  // the flag is ignored under EVENT_IDX; idx 2 has not passed 3
    used = 4;
    CHECK(w.AnyWanted());
    CHECK(w.ClaimWanted());
    used = 5;
    CHECK_FALSE(w.AnyWanted());  // used_event still 3: already interrupted past it
    CHECK(w.Claim());            // the back end's call takes it anyway
  }
}

TEST_CASE("a cleared watch sees nothing, and out-of-range queues are ignored") {
  UsedIndexWatch w;
  uint16_t used = 0;
  w.Watch(0, {.used_idx = &used});
  w.Watch(UsedIndexWatch::kMaxQueues, {.used_idx = &used});
  w.Clear();
  used = 5;
  CHECK_FALSE(w.AnyWanted());
  CHECK_FALSE(w.Claim());
}

TEST_CASE("a poller and a back end's call racing claim every move exactly once") {
  UsedIndexWatch w;
  uint16_t used = 0;
  w.Watch(0, {.used_idx = &used});
  constexpr int kMoves = 2000;
  std::atomic<int> claims{0};
  std::atomic<bool> done{false};
  absl::Mutex mu;  // the owner's lock, as VhostUserBlk's mu_
  std::thread poller([&] {
    while (!done.load()) {
      if (!w.AnyWanted()) {
        std::this_thread::yield();
        continue;
      }
      absl::MutexLock lock(&mu);
      if (w.ClaimWanted()) claims.fetch_add(1);
    }
  });
  std::thread caller([&] {
    while (!done.load()) {
      std::this_thread::yield();
      absl::MutexLock lock(&mu);
      if (w.Claim()) claims.fetch_add(1);
    }
  });
  for (int i = 1; i <= kMoves; ++i) {
    __atomic_store_n(&used, static_cast<uint16_t>(i), __ATOMIC_RELEASE);
    // One move at a time: wait until it has been claimed, as a completion waits for its interrupt.
    while (w.AnyWanted()) std::this_thread::yield();
    absl::MutexLock lock(&mu);  // the claim is complete once the lock is free
  }
  done.store(true);
  poller.join();
  caller.join();
  CHECK(claims.load() == kMoves);
}

}  // namespace
}  // namespace coalesce
