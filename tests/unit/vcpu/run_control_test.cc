#include "hypervisor/vcpu/run_control.h"

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

}  // namespace
}  // namespace coalesce
