#include "devmodel/vhost_user/used_index_watch.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace coalesce {
namespace {

TEST_CASE("a used index that moves is claimed once, by whoever comes first") {
  UsedIndexWatch w;
  uint16_t used0 = 7, used1 = 0;  // the idx fields of two used rings
  CHECK_FALSE(w.AnyNew());  // nothing watched
  w.Watch(0, &used0);
  w.Watch(1, &used1);
  CHECK_FALSE(w.AnyNew());  // the index at Watch() counts as claimed
  CHECK_FALSE(w.Claim());
  used1 = 1;
  CHECK(w.AnyNew());
  CHECK(w.Claim());
  CHECK_FALSE(w.AnyNew());
  CHECK_FALSE(w.Claim());  // the second claimant (the back end's call) finds nothing new
  used0 = 8;
  used1 = 2;
  CHECK(w.Claim());  // both at once: one claim
  CHECK_FALSE(w.Claim());
}

TEST_CASE("the index wraps around at 65536 and still counts as moved") {
  UsedIndexWatch w;
  uint16_t used = 0xffff;
  w.Watch(0, &used);
  used = 0;
  CHECK(w.AnyNew());
  CHECK(w.Claim());
}

TEST_CASE("a cleared watch sees nothing, and out-of-range queues are ignored") {
  UsedIndexWatch w;
  uint16_t used = 0;
  w.Watch(0, &used);
  w.Watch(UsedIndexWatch::kMaxQueues, &used);
  w.Clear();
  used = 5;
  CHECK_FALSE(w.AnyNew());
  CHECK_FALSE(w.Claim());
}

TEST_CASE("two claimants racing claim every move exactly once") {
  UsedIndexWatch w;
  uint16_t used = 0;
  w.Watch(0, &used);
  constexpr int kMoves = 20000;
  std::atomic<int> claims{0};
  std::atomic<bool> done{false};
  absl::Mutex mu;  // the owner's lock, as VhostUserBlk's mu_
  auto claimant = [&] {
    while (!done.load()) {
      if (!w.AnyNew()) continue;
      absl::MutexLock lock(&mu);
      if (w.Claim()) claims.fetch_add(1);
    }
  };
  std::thread a(claimant), b(claimant);
  for (int i = 1; i <= kMoves; ++i) {
    __atomic_store_n(&used, static_cast<uint16_t>(i), __ATOMIC_RELEASE);
    // One move at a time: wait until it has been claimed, as a completion waits for its interrupt.
    while (w.AnyNew()) std::this_thread::yield();
  }
  done.store(true);
  a.join();
  b.join();
  CHECK(claims.load() == kMoves);
}

}  // namespace
}  // namespace coalesce
