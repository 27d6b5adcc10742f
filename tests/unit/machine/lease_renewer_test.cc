// LeaseRenewer (hypervisor/machine/lease_renewer.h) against two real edge agents (processes serving gRPC, each
// hosting a VM through the fake runtime): leases of one second are renewed every third of a second, and an agent
// that stops answering (SIGSTOP: its calls hang until the client's RPC timeout) holds back no other agent's
// renewals. With one renewal at a time, the first call to the stopped agent would block every renewal for 10 s.
#include <signal.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "hypervisor/base/child_process.h"
#include "hypervisor/base/temp_dir.h"
#include "hypervisor/machine/lease_renewer.h"
#include "tests/unit/edge_monitor/agent_runner_process.h"

namespace coalesce {
namespace {

// `coalesce edge` granting leases of at most 1 s.
AgentRunnerProcess StartAgent() {
  return StartAgentRunner("--capacity vcpus=2,memory=1G --max-lease 1 --log-level error");
}

pb::HostVcpusRequest Request(const std::string& vm_id) {
  pb::HostVcpusRequest request;
  request.set_vm_id(vm_id);
  request.set_guest_memory_bytes(64ull << 20);
  request.set_guest_vcpu_count(2);
  request.add_vcpu_ids(1);
  request.set_home_data_plane_address("127.0.0.1:9000");
  request.set_data_plane_key(std::string(32, 'k'));
  return request;
}

TEST_CASE("leases are renewed at a third of the grant, and a stalled agent holds back no other one") {
  auto dir = TempDir::Create("coalesce-renewer-test-");
  REQUIRE(dir.ok());
  ::setenv("FAKE_REMOTE_NODE_DIR", dir->path().c_str(), 1);
  AgentRunnerProcess a = StartAgent();
  AgentRunnerProcess b = StartAgent();
  auto client_a = EdgeAgentClient::Connect(a.address);
  auto client_b = EdgeAgentClient::Connect(b.address);
  REQUIRE(client_a.ok());
  REQUIRE(client_b.ok());
  auto hosted_a = (*client_a)->HostVcpus(Request("vm-a"));
  auto hosted_b = (*client_b)->HostVcpus(Request("vm-b"));
  REQUIRE(hosted_a.ok());
  REQUIRE(hosted_b.ok());
  CHECK(hosted_b->lease_ms_left() <= 1000);

  LeaseRenewer renewer(0);
  renewer.Add(1, client_a->get(), "vm-a", absl::Milliseconds(hosted_a->lease_ms_left()));
  renewer.Add(2, client_b->get(), "vm-b", absl::Milliseconds(hosted_b->lease_ms_left()));
  absl::SleepFor(absl::Seconds(2));
  const uint64_t both = renewer.renewals();
  CHECK(both >= 6);  // two leases, each renewed about every 333 ms

  // Agent A stops answering: its renewal calls hang. B's lease must go on being renewed all the while.
  REQUIRE(a.process.Signal(SIGSTOP).ok());
  absl::SleepFor(absl::Milliseconds(500));  // a call to A is in flight by now
  const uint64_t before = renewer.renewals();
  absl::SleepFor(absl::Seconds(3));
  const uint64_t during = renewer.renewals() - before;
  INFO("renewals while agent A was stopped: " << during);
  CHECK(during >= 5);  // B alone: about 9 in 3 s
  auto state_b = (*client_b)->GetVmState("vm-b");
  REQUIRE(state_b.ok());
  CHECK(state_b->lease_ms_left() > 0);

  REQUIRE(a.process.Signal(SIGCONT).ok());
  renewer.Stop();  // joins the call to A (it answers now)
  REQUIRE(a.process.Signal(SIGTERM).ok());
  REQUIRE(b.process.Signal(SIGTERM).ok());
  CHECK(a.process.Wait().ok());
  CHECK(b.process.Wait().ok());
}

}  // namespace
}  // namespace coalesce
