// `coalesce edge` as a process: started with flags, serving real gRPC, hosting a VM, and shutting down on SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/child_process.h"
#include "hypervisor/base/control_socket.h"
#include "edge_monitor/edge_agent_client.h"
#include "agent_runner_process.h"
#include "profile_test_util.h"

namespace coalesce {
namespace {

TEST_CASE("coalesce edge serves, hosts a VM, and stops everything on SIGTERM", "[edge_agent_main]") {
  TempDir dir;
  ::setenv("FAKE_REMOTE_NODE_DIR", dir.path().c_str(), 1);
  dir.OpenToEveryone();
  AgentRunnerProcess started = StartAgentRunner("--capacity vcpus=2,memory=1G --log-level warning");
  ChildProcess* agent = &started.process;
  const std::string& banner = started.banner;
  const std::string& address = started.address;
  const std::string control_marker = " control ";
  REQUIRE(banner.find(control_marker) != std::string::npos);
  const std::string control = banner.substr(banner.find(control_marker) + control_marker.size());
  CHECK_THAT(banner, Catch::Contains("capacity vcpus=2,memory=1G control "));
  CHECK_THAT(control, Catch::EndsWith(absl::StrCat("/edge-", address.substr(address.rfind(':') + 1), ".sock")));

  auto client = EdgeAgentClient::Connect(address);
  REQUIRE(client.ok());
  auto capacity = (*client)->GetCapacity();
  REQUIRE(capacity.ok());
  CHECK(capacity->total_vcpus() == 2);

  pb::HostVcpusRequest request;
  request.set_vm_id("vm-main");
  request.set_guest_memory_bytes(512ull << 20);
  request.set_guest_vcpu_count(2);
  request.add_vcpu_ids(1);
  request.set_home_data_plane_address("127.0.0.1:9000");
  request.set_data_plane_key(std::string(32, 'k'));
  auto hosted = (*client)->HostVcpus(request);
  REQUIRE(hosted.ok());
  const pid_t runtime = static_cast<pid_t>(hosted->runtime_pid());
  REQUIRE(runtime > 0);
  CHECK(::kill(runtime, 0) == 0);
  // The operator's control socket answers (edge_control.h).
  auto leases = CallControl(control, "leases", absl::Seconds(5));
  REQUIRE(leases.ok());
  CHECK_THAT(*leases, Catch::StartsWith("VM vm-main: VM_STATE_RUNNING, vCPUs 1, 512M, lease "));

  REQUIRE(agent->Signal(SIGTERM).ok());
  auto status = agent->Wait();
  REQUIRE(status.ok());
  CHECK(DescribeWaitStatus(*status) == "exited with status 0");
  // The agent stopped (and reaped) the VM's runtime before exiting.
  CHECK(::kill(runtime, 0) == -1);
  CHECK(errno == ESRCH);
}

TEST_CASE("coalesce edge exits 1 naming the address when it cannot listen", "[edge_agent_main]") {
  ChildProcess::Options options;
  // TEST-NET-1: not on this host. --insecure: plaintext off loopback is allowed, so the bind is what fails.
  options.argv = {EDGE_AGENT_RUNNER, "edge", "--listen", "192.0.2.1:7001", "--insecure"};
  auto agent = ChildProcess::Spawn(options);
  REQUIRE(agent.ok());
  auto status = agent->Wait();
  REQUIRE(status.ok());
  CHECK(DescribeWaitStatus(*status) == "exited with status 1");
}

TEST_CASE("coalesce edge exits 2 on a non-loopback --listen without TLS or --insecure", "[edge_agent_main]") {
  ChildProcess::Options options;
  options.argv = {EDGE_AGENT_RUNNER, "edge", "--listen", "0.0.0.0:0"};
  auto agent = ChildProcess::Spawn(options);
  REQUIRE(agent.ok());
  auto status = agent->Wait();
  REQUIRE(status.ok());
  CHECK(DescribeWaitStatus(*status) == "exited with status 2");
}

}  // namespace
}  // namespace coalesce
