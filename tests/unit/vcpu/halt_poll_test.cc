#include "hypervisor/vcpu/halt_poll.h"

#include <catch2/catch.hpp>

namespace coalesce {
namespace {

using absl::Microseconds;

TEST_CASE("the halt-poll window grows after short halts the poll missed, as KVM's does") {
  HaltPollWindow w;
  CHECK(w.window() == absl::ZeroDuration());  // no polling before a short halt has been seen
  w.Record(Microseconds(30));
  CHECK(w.window() == Microseconds(10));  // grow start
  w.Record(Microseconds(30));
  CHECK(w.window() == Microseconds(20));
  w.Record(Microseconds(30));
  CHECK(w.window() == Microseconds(40));
  // Caught by the poll: the window stays.
  w.Record(Microseconds(30));
  CHECK(w.window() == Microseconds(40));
  for (int i = 0; i < 10; ++i) w.Record(Microseconds(190));
  CHECK(w.window() == Microseconds(200));  // capped at the maximum
}

TEST_CASE("a halt longer than the maximum drops the window to zero") {
  HaltPollWindow w(Microseconds(100));
  w.Record(Microseconds(50));
  w.Record(Microseconds(50));
  REQUIRE(w.window() == Microseconds(20));
  w.Record(absl::Milliseconds(4));  // an idle tick
  CHECK(w.window() == absl::ZeroDuration());
  // Exactly the maximum still counts as short.
  w.Record(Microseconds(100));
  CHECK(w.window() == Microseconds(10));
}

TEST_CASE("a zero maximum never polls") {
  HaltPollWindow w(absl::ZeroDuration());
  for (int i = 0; i < 5; ++i) w.Record(Microseconds(5));
  CHECK(w.window() == absl::ZeroDuration());
}

}  // namespace
}  // namespace coalesce
