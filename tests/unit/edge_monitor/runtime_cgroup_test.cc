// RuntimeCgroups where the host cannot give runtimes cgroup v2 limits: the reason is named (the agent then says so
// once and goes on). The limits themselves are checked on a real cgroup v2 hierarchy by the multi-node test in the
// nested KVM VM (tests/e2e/multinode_test.py agent_killed).
#include <catch2/catch.hpp>
#include <fstream>

#include "edge_monitor/runtime_cgroup.h"
#include "hypervisor/base/temp_dir.h"

namespace coalesce {
namespace {

TEST_CASE("runtime cgroups: a directory that is not cgroup v2, or lacks a controller, is named", "[cgroup]") {
  auto dir = TempDir::Create("cgroup-test");
  REQUIRE(dir.ok());
  auto none = RuntimeCgroups::Open(dir->path());
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(none.status().message()), Catch::Contains("no cgroup v2 hierarchy at " + dir->path()));
  std::ofstream(dir->path() + "/cgroup.controllers") << "cpuset cpu io pids\n";
  auto no_memory = RuntimeCgroups::Open(dir->path());
  REQUIRE_FALSE(no_memory.ok());
  CHECK_THAT(std::string(no_memory.status().message()), Catch::Contains("lacks the memory controller"));
}

}  // namespace
}  // namespace coalesce
