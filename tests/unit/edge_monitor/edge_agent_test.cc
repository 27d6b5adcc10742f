// The edge agent over real gRPC on loopback, with real child processes: fake_remote_node (built next to this test)
// stands in for the remote vCPU runtime and follows its argv/readiness contract.
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "edge_monitor/edge_agent_client.h"
#include "edge_monitor/discovery.h"
#include "edge_monitor/edge_agent_server.h"
#include "edge_monitor/edge_control.h"
#include "edge_monitor/host_conditions.h"
#include "edge_monitor/process_vm_runtime_factory.h"
#include "hypervisor/base/unique_fd.h"
#include "profile_test_util.h"

namespace coalesce {
namespace {

using Catch::Contains;
using Catch::StartsWith;

constexpr uint64_t kMiB = 1ull << 20;

class Agent {
 public:
  explicit Agent(EdgeCapacity capacity, HostLimits limits = {}, std::string power_supply_dir = "/sys/class/power_supply",
                 absl::Duration max_lease = absl::Seconds(300)) {
    ::setenv("FAKE_REMOTE_NODE_DIR", dir_.path().c_str(), 1);
    dir_.OpenToEveryone();
    ProcessVmRuntimeOptions runtime;
    runtime.executable = FAKE_REMOTE_NODE;
    EdgeAgentService::Options options;
    options.capacity = capacity;
    options.limits = limits;
    options.power_supply_dir = power_supply_dir;
    options.start_timeout = absl::Seconds(10);
    options.default_stop_grace = absl::Seconds(2);
    options.departure_grace = absl::Seconds(2);
    options.max_lease = max_lease;
    options.lease_check_interval = absl::Milliseconds(20);
    auto server = EdgeAgentServer::Start("127.0.0.1:0", options, std::make_unique<ProcessVmRuntimeFactory>(runtime));
    REQUIRE(server.ok());
    server_ = *std::move(server);
  }

  std::unique_ptr<EdgeAgentClient> Client(EdgeAgentClientOptions options = {}) {
    auto client = EdgeAgentClient::Connect(server_->address(), options);
    REQUIRE(client.ok());
    return *std::move(client);
  }

  // The pid the fake runtime of `vm_id` recorded, or 0.
  pid_t RuntimePid(const std::string& vm_id) const {
    for (const std::string& line : RuntimeArgv(vm_id)) {
      if (line.rfind("pid=", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(4)));
    }
    return 0;
  }
  std::vector<std::string> RuntimeArgv(const std::string& vm_id) const {
    std::ifstream in(dir_.path() + "/" + vm_id + ".args");
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  EdgeAgentServer& server() { return *server_; }
  std::string address() const { return server_->address(); }

 private:
  TempDir dir_;
  std::unique_ptr<EdgeAgentServer> server_;
};

pb::HostVcpusRequest Request(const std::string& vm_id, std::vector<uint32_t> ids, uint64_t memory = 256 * kMiB,
                             uint32_t vcpu_count = 4) {
  pb::HostVcpusRequest request;
  request.set_vm_id(vm_id);
  request.set_guest_memory_bytes(memory);
  request.set_guest_vcpu_count(vcpu_count);
  for (uint32_t id : ids) request.add_vcpu_ids(id);
  request.set_home_data_plane_address("127.0.0.1:9000");
  request.set_data_plane_key(std::string(32, 'k'));
  return request;
}

bool ProcessGone(pid_t pid) { return pid > 0 && ::kill(pid, 0) == -1 && errno == ESRCH; }

// Polls GetVmState until `pred` holds or 30 s pass (a bound for a loaded host, not a timing check).
template <typename Pred>
absl::StatusOr<pb::VmStatus> WaitForState(EdgeAgentClient& client, const std::string& vm_id, Pred pred) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (true) {
    absl::StatusOr<pb::VmStatus> state = client.GetVmState(vm_id);
    if (pred(state) || absl::Now() > deadline) return state;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

TEST_CASE("GetCapacity reports capacity and load", "[edge_agent]") {
  Agent agent({4, 1024 * kMiB});
  auto client = agent.Client();
  auto capacity = client->GetCapacity();
  REQUIRE(capacity.ok());
  CHECK(capacity->total_vcpus() == 4);
  CHECK(capacity->total_memory_bytes() == 1024 * kMiB);
  CHECK(capacity->reserved_vcpus() == 0);
  CHECK(capacity->reserved_memory_bytes() == 0);
  CHECK(capacity->running_vms() == 0);
  CHECK(capacity->host_cpus() >= 1);
  CHECK(capacity->load_average_1m() >= 0.0);
}

TEST_CASE("Two VMs run at once, each in its own runtime process; StopVm and GetVmState", "[edge_agent]") {
  Agent agent({4, 1024 * kMiB});
  auto client = agent.Client();

  auto a = client->HostVcpus(Request("vm-a", {2, 3}));
  REQUIRE(a.ok());
  CHECK(a->state() == pb::VM_STATE_RUNNING);
  CHECK(a->vm_id() == "vm-a");
  auto b = client->HostVcpus(Request("vm-b", {1}, 128 * kMiB, 2));
  REQUIRE(b.ok());
  CHECK(b->state() == pb::VM_STATE_RUNNING);

  // Separate processes, both alive, started with the documented argv.
  REQUIRE(a->runtime_pid() != 0);
  REQUIRE(b->runtime_pid() != 0);
  CHECK(a->runtime_pid() != b->runtime_pid());
  CHECK(agent.RuntimePid("vm-a") == static_cast<pid_t>(a->runtime_pid()));
  CHECK(::kill(static_cast<pid_t>(a->runtime_pid()), 0) == 0);
  CHECK(::kill(static_cast<pid_t>(b->runtime_pid()), 0) == 0);
  const std::vector<std::string> argv = agent.RuntimeArgv("vm-a");
  REQUIRE(argv.size() >= 14);
  CHECK(argv[1] == "remote-node");
  CHECK(std::vector<std::string>(argv.begin() + 2, argv.begin() + 12) ==
        std::vector<std::string>{"--vm-id=vm-a", "--memory=268435456", "--vcpu-count=4", "--vcpus=2,3",
                                 "--home=127.0.0.1:9000", "--tsc-offset=0", "--node-id=1",
                                 "--cpu-model=baseline", "--ready-fd=3", "--data-plane-key-fd=0"});
  // An agent running as root passes the devices a runtime in its own user namespace cannot open, as fds 4, 5.
  size_t key_at = 12;
  std::vector<std::string> devices;
  while (key_at < argv.size() && argv[key_at].rfind("key=", 0) != 0) devices.push_back(argv[key_at++]);
  std::vector<std::string> expected_devices;
  if (::geteuid() == 0 && ::access("/dev/kvm", R_OK | W_OK) == 0) {
    expected_devices.push_back("--kvm-fd=4");
    if (::access("/dev/userfaultfd", R_OK | W_OK) == 0) expected_devices.push_back("--userfaultfd-device-fd=5");
  }
  CHECK(devices == expected_devices);
  // The key reached the runtime through its stdin pipe, and it is on no command line.
  REQUIRE(key_at < argv.size());
  CHECK(argv[key_at] == "key=" + std::string(32, 'k'));
  for (size_t i = 0; i < key_at; ++i) CHECK(argv[i].find("kkkk") == std::string::npos);

  auto capacity = client->GetCapacity();
  REQUIRE(capacity.ok());
  CHECK(capacity->reserved_vcpus() == 3);
  CHECK(capacity->reserved_memory_bytes() == 384 * kMiB);
  CHECK(capacity->running_vms() == 2);

  auto state_a = client->GetVmState("vm-a");
  REQUIRE(state_a.ok());
  CHECK(state_a->state() == pb::VM_STATE_RUNNING);
  CHECK(std::vector<uint32_t>(state_a->vcpu_ids().begin(), state_a->vcpu_ids().end()) ==
        std::vector<uint32_t>{2, 3});

  // Stopping one leaves the other running.
  auto stopped = client->StopVm("vm-a");
  REQUIRE(stopped.ok());
  CHECK(stopped->state() == pb::VM_STATE_STOPPED);
  CHECK(stopped->exit_code() == 0);  // the runtime exits 0 on SIGTERM
  CHECK(stopped->detail() == "exited with status 0");
  CHECK(ProcessGone(static_cast<pid_t>(a->runtime_pid())));

  auto gone = client->GetVmState("vm-a");
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(gone.status().message()), Contains("VM 'vm-a' is not hosted here"));
  auto still = client->GetVmState("vm-b");
  REQUIRE(still.ok());
  CHECK(still->state() == pb::VM_STATE_RUNNING);
  CHECK(client->GetCapacity()->reserved_vcpus() == 1);

  auto again = client->StopVm("vm-a");
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("Leases: granted up to the agent's longest, renewed, and a lease not renewed sends the runtime away",
          "[edge_agent][lease]") {
  Agent agent({4, 1024 * kMiB}, {}, "/sys/class/power_supply", absl::Milliseconds(1500));
  auto client = agent.Client();
  pb::HostVcpusRequest asks_long = Request("long-vm", {1});
  asks_long.set_lease_seconds(3600);
  auto granted = client->HostVcpus(asks_long);
  REQUIRE(granted.ok());
  CHECK(granted->lease_ms_left() > 1000);
  CHECK(granted->lease_ms_left() <= 1500);  // capped at --max-lease
  // Renewed twice past the first grant's end: still running.
  for (int i = 0; i < 3; ++i) {
    absl::SleepFor(absl::Milliseconds(700));
    auto renewed = client->RenewLease("long-vm", 3600);
    REQUIRE(renewed.ok());
    CHECK(renewed->state() == pb::VM_STATE_RUNNING);
    CHECK(renewed->lease_ms_left() > 1000);
  }
  CHECK(ProcessGone(static_cast<pid_t>(granted->runtime_pid())) == false);
  // Left alone, it ends: the runtime gets SIGTERM (it leaves and exits 0) and the record says why. Waits through
  // STOPPING too, which a loaded CI host once showed at the first look after RUNNING.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::StatusOr<pb::VmStatus> ended = client->GetVmState("long-vm");
  while (ended.ok() && ended->state() != pb::VM_STATE_STOPPED && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    ended = client->GetVmState("long-vm");
  }
  REQUIRE(ended.ok());
  CHECK(ended->state() == pb::VM_STATE_STOPPED);
  CHECK(ended->exit_code() == 0);
  CHECK(ended->detail() == "lease expired (not renewed in time): exited with status 0");
  CHECK(ended->lease_ms_left() == 0);
  CHECK(ProcessGone(static_cast<pid_t>(granted->runtime_pid())));
  CHECK(client->GetCapacity()->reserved_vcpus() == 0);
  auto late = client->RenewLease("long-vm", 0);
  REQUIRE_FALSE(late.ok());
  CHECK(late.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(late.status().message()), Contains("no lease to renew: lease expired"));
  auto unknown = client->RenewLease("nobody", 0);
  CHECK(unknown.status().code() == absl::StatusCode::kNotFound);
  CHECK(client->RenewLease("bad id!", 0).status().code() == absl::StatusCode::kInvalidArgument);
  // The id is free again; a request for no particular lease gets the longest.
  auto again = client->HostVcpus(Request("long-vm", {1}));
  REQUIRE(again.ok());
  CHECK(again->lease_ms_left() > 1000);
}

TEST_CASE("Leases: the operator lists and revokes them over the agent's control commands", "[edge_agent][lease]") {
  Agent agent({4, 1024 * kMiB});
  auto client = agent.Client();
  auto a = client->HostVcpus(Request("vm-a", {1, 2}));
  auto b = client->HostVcpus(Request("vm-b", {3}, 128 * kMiB));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  EdgeAgentService& service = agent.server().service();
  const std::string leases = EdgeControlCommand(service, "leases");
  CHECK_THAT(leases, Contains("VM vm-a: VM_STATE_RUNNING, vCPUs 1-2, 256M, lease ") &&
                         Contains("VM vm-b: VM_STATE_RUNNING, vCPUs 3, 128M, lease "));
  const std::string revoked = EdgeControlCommand(service, "revoke vm-a");
  CHECK_THAT(revoked, StartsWith("VM vm-a: lease revoked; its runtime left in ") &&
                          Contains("(lease revoked by the edge's operator: exited with status 0)"));
  CHECK(ProcessGone(static_cast<pid_t>(a->runtime_pid())));
  CHECK(client->GetVmState("vm-b")->state() == pb::VM_STATE_RUNNING);
  CHECK(client->GetCapacity()->reserved_vcpus() == 1);
  auto renew = client->RenewLease("vm-a", 0);
  CHECK(renew.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(renew.status().message()), Contains("lease revoked by the edge's operator"));
  CHECK_THAT(EdgeControlCommand(service, "revoke vm-a"), StartsWith("error: revoke: VM 'vm-a': its lease has ended"));
  CHECK_THAT(EdgeControlCommand(service, "revoke nobody"), StartsWith("error: revoke: VM 'nobody' is not hosted here"));
  CHECK_THAT(EdgeControlCommand(service, "revoke"), StartsWith("error: revoke takes one argument"));
  CHECK_THAT(EdgeControlCommand(service, "evict vm-b"), StartsWith("error: unknown command 'evict'"));
  CHECK_THAT(EdgeControlCommand(service, ""), StartsWith("error: empty command"));
  CHECK_THAT(EdgeControlCommand(service, "leases"), Contains("VM vm-a: VM_STATE_STOPPED") &&
                                                         Contains("lease revoked by the edge's operator"));
  // StopVm still clears the ended record.
  CHECK(client->StopVm("vm-a").ok());
  CHECK(client->GetVmState("vm-a").status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("Requests over capacity are refused with the reason", "[edge_agent]") {
  Agent agent({4, 1024 * kMiB});
  auto client = agent.Client();
  REQUIRE(client->HostVcpus(Request("vm-a", {0, 1, 2}, 256 * kMiB)).ok());

  auto too_many = client->HostVcpus(Request("vm-b", {0, 1}));
  REQUIRE_FALSE(too_many.ok());
  CHECK(too_many.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(too_many.status().message()),
             StartsWith(absl::StrCat("edge agent ", agent.address(), ": HostVcpus: ")) &&
                 Contains("over capacity: 2 vCPUs requested, 1 of 4 free"));

  auto too_big = client->HostVcpus(Request("vm-c", {0}, 2048 * kMiB));
  REQUIRE_FALSE(too_big.ok());
  CHECK(too_big.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(too_big.status().message()), Contains("memory 2G requested, 768M of 1G free"));

  // Nothing was reserved for the refused requests.
  auto capacity = client->GetCapacity();
  REQUIRE(capacity.ok());
  CHECK(capacity->reserved_vcpus() == 3);
  CHECK(capacity->running_vms() == 1);
  CHECK(client->HostVcpus(Request("vm-d", {3})).ok());
}

// A directory shaped like /sys/class/power_supply with one battery (this host has none to drain).
void WriteBattery(const std::string& dir, const std::string& capacity, const std::string& status) {
  std::filesystem::create_directories(dir + "/BAT0");
  std::filesystem::create_directories(dir + "/AC");
  std::ofstream(dir + "/AC/type") << "Mains\n";
  std::ofstream(dir + "/BAT0/type") << "Battery\n";
  std::ofstream(dir + "/BAT0/capacity") << capacity << "\n";
  std::ofstream(dir + "/BAT0/status") << status << "\n";
}

TEST_CASE("Host conditions: the battery is read from the power-supply class", "[edge_agent][conditions]") {
  TempDir dir;
  CHECK(!ReadHostConditions(dir.path()).battery.has_value());
  CHECK(!ReadHostConditions(dir.path() + "/missing").battery.has_value());
  WriteBattery(dir.path(), "15", "Discharging");
  HostConditions now = ReadHostConditions(dir.path());
  REQUIRE(now.battery.has_value());
  CHECK(now.battery->percent == 15);
  CHECK(now.battery->discharging);
  CHECK(now.load_per_cpu >= 0);
  WriteBattery(dir.path(), "15", "Charging");
  CHECK(!ReadHostConditions(dir.path()).battery->discharging);
  WriteBattery(dir.path(), "lots", "Discharging");  // a charge that is not a number decides nothing
  CHECK(!ReadHostConditions(dir.path()).battery.has_value());
}

TEST_CASE("Host conditions: load and battery limits refuse with the figure and the limit", "[edge_agent][conditions]") {
  const HostConditions busy{.load_per_cpu = 1.5, .battery = BatteryState{.percent = 10, .discharging = true}};
  CHECK(CheckHostConditions(busy, {}, 0).ok());
  CHECK_THAT(std::string(CheckHostConditions(busy, {.max_load_per_cpu = 1.0}, 0).message()),
             Contains("load 1.50 per CPU is over this agent's limit 1.00 (--max-load)"));
  CHECK_THAT(std::string(CheckHostConditions(busy, {}, 0.5).message()),
             Contains("load 1.50 per CPU is over the home user's limit 0.50 (policies.max_edge_load)"));
  CHECK(CheckHostConditions(busy, {.max_load_per_cpu = 2.0}, 1.6).ok());
  const absl::Status low = CheckHostConditions(busy, {.min_battery_percent = 20}, 0);
  CHECK(low.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(low.message()), Contains("on battery at 10%, under this agent's limit 20% (--min-battery)"));
  HostConditions charging = busy;
  charging.battery->discharging = false;
  CHECK(CheckHostConditions(charging, {.min_battery_percent = 20}, 0).ok());
}

TEST_CASE("An agent on a low battery refuses leases, and grants them again on mains power", "[edge_agent][conditions]") {
  TempDir supplies;
  WriteBattery(supplies.path(), "12", "Discharging");
  Agent agent({.vcpus = 4, .memory_bytes = 1024 * kMiB}, {.min_battery_percent = 30}, supplies.path());
  auto client = agent.Client();
  auto refused = client->HostVcpus(Request("vm-a", {1}));
  REQUIRE(!refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(refused.status().message()), Contains("on battery at 12%, under this agent's limit 30%"));
  WriteBattery(supplies.path(), "12", "Charging");
  auto granted = client->HostVcpus(Request("vm-a", {1}));
  CHECK(granted.ok());
}

TEST_CASE("Duplicate VM ids and malformed requests are refused", "[edge_agent]") {
  Agent agent({8, 4096 * kMiB});
  auto client = agent.Client();
  REQUIRE(client->HostVcpus(Request("vm-a", {1})).ok());

  auto duplicate = client->HostVcpus(Request("vm-a", {2}));
  REQUIRE_FALSE(duplicate.ok());
  CHECK(duplicate.status().code() == absl::StatusCode::kAlreadyExists);
  CHECK_THAT(std::string(duplicate.status().message()), Contains("duplicate VM id: VM 'vm-a' is already hosted"));

  auto refused = [&](pb::HostVcpusRequest request) {
    auto result = client->HostVcpus(request);
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
    return std::string(result.status().message());
  };
  CHECK_THAT(refused(Request("vm-b", {9})), Contains("bad request: vcpu_ids: vCPU 9 does not exist"));
  CHECK_THAT(refused(Request("vm-b", {1, 1})), Contains("vCPU 1 is listed twice"));
  CHECK_THAT(refused(Request("vm-b", {})), Contains("vcpu_ids is empty"));
  CHECK_THAT(refused(Request("vm b", {1})), Contains("vm_id may only contain"));
  CHECK_THAT(refused(Request("vm-b", {1}, 0)), Contains("guest_memory_bytes is 0"));
  CHECK_THAT(refused(Request("vm-b", {1}, 256 * kMiB, 300)), Contains("guest_vcpu_count 300 is out of range"));
  pb::HostVcpusRequest no_home = Request("vm-b", {1});
  no_home.set_home_data_plane_address("home");
  CHECK_THAT(refused(no_home), Contains("home_data_plane_address: 'home' is not host:port"));
  pb::HostVcpusRequest bad_node = Request("vm-b", {1});
  bad_node.set_node_id(64);
  CHECK_THAT(refused(bad_node), Contains("node_id 64 is out of range"));
  pb::HostVcpusRequest no_key = Request("vm-b", {1});
  no_key.clear_data_plane_key();
  CHECK_THAT(refused(no_key), Contains("data_plane_key is 0 bytes; the VM's data-plane key is 32"));
  pb::HostVcpusRequest bad_link = Request("vm-b", {1});
  bad_link.set_link_emulation("wifi7");
  CHECK_THAT(refused(bad_link), Contains("link_emulation: 'wifi7' is not a link class"));
  CHECK(client->GetCapacity()->running_vms() == 1);
}

TEST_CASE("A runtime that fails during start-up fails HostVcpus and holds nothing", "[edge_agent]") {
  Agent agent({4, 1024 * kMiB});
  auto client = agent.Client();
  auto failed = client->HostVcpus(Request("exit3-vm", {1}));
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.status().code() == absl::StatusCode::kInternal);
  CHECK_THAT(std::string(failed.status().message()),
             Contains("runtime ended during start-up") && Contains("exited with status 3"));
  CHECK(client->GetCapacity()->reserved_vcpus() == 0);
  CHECK(client->GetVmState("exit3-vm").status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("A runtime that ends on its own is reported EXITED and frees its resources", "[edge_agent]") {
  Agent agent({2, 1024 * kMiB});
  auto client = agent.Client();
  auto started = client->HostVcpus(Request("crash7-vm", {0, 1}));
  REQUIRE(started.ok());
  CHECK(started->state() == pb::VM_STATE_RUNNING);
  auto exited = WaitForState(*client, "crash7-vm", [](const absl::StatusOr<pb::VmStatus>& s) {
    return s.ok() && s->state() == pb::VM_STATE_EXITED;
  });
  REQUIRE(exited.ok());
  CHECK(exited->state() == pb::VM_STATE_EXITED);
  CHECK(exited->exit_code() == 7);
  CHECK(exited->detail() == "exited with status 7");
  CHECK(client->GetCapacity()->reserved_vcpus() == 0);
  // Its resources and id are free again.
  CHECK(client->HostVcpus(Request("other", {0, 1})).ok());
  auto reused = client->HostVcpus(Request("crash7-vm", {0}, 256 * kMiB));
  REQUIRE_FALSE(reused.ok());  // the two vCPUs are taken by "other" now
  CHECK(reused.status().code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("StopVm kills a runtime that ignores SIGTERM after the grace period", "[edge_agent]") {
  Agent agent({4, 1024 * kMiB});
  auto client = agent.Client();
  auto started = client->HostVcpus(Request("stubborn-vm", {1}));
  REQUIRE(started.ok());
  const absl::Time before = absl::Now();
  auto stopped = client->StopVm("stubborn-vm", absl::Milliseconds(200));
  const absl::Duration took = absl::Now() - before;
  REQUIRE(stopped.ok());
  CHECK(stopped->state() == pb::VM_STATE_STOPPED);
  CHECK(stopped->exit_code() == -SIGKILL);
  CHECK_THAT(stopped->detail(), StartsWith("killed by signal 9"));
  CHECK(took >= absl::Milliseconds(200));
  CHECK(took < absl::Seconds(3));
  CHECK(ProcessGone(static_cast<pid_t>(started->runtime_pid())));
}

TEST_CASE("A runtime that never gets ready fails at the caller's deadline and is killed", "[edge_agent]") {
  Agent agent({4, 1024 * kMiB});
  EdgeAgentClientOptions options;
  options.host_timeout = absl::Seconds(1);
  auto client = agent.Client(options);
  const absl::Time before = absl::Now();
  auto result = client->HostVcpus(Request("noready-vm", {1}));
  const absl::Duration took = absl::Now() - before;
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == absl::StatusCode::kDeadlineExceeded);
  CHECK_THAT(std::string(result.status().message()), StartsWith(absl::StrCat("edge agent ", agent.address())));
  CHECK(took < absl::Seconds(3));
  // The agent gives up on it too: no record, no process.
  auto state = WaitForState(*client, "noready-vm", [](const absl::StatusOr<pb::VmStatus>& s) {
    return s.status().code() == absl::StatusCode::kNotFound;
  });
  CHECK(state.status().code() == absl::StatusCode::kNotFound);
  const pid_t pid = agent.RuntimePid("noready-vm");
  REQUIRE(pid != 0);
  CHECK(ProcessGone(pid));
  CHECK(client->GetCapacity()->reserved_vcpus() == 0);
}

TEST_CASE("Shutting the agent down stops every hosted VM", "[edge_agent]") {
  Agent agent({4, 1024 * kMiB});
  auto client = agent.Client();
  auto a = client->HostVcpus(Request("vm-a", {1}));
  auto b = client->HostVcpus(Request("vm-b", {2}));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  agent.server().Shutdown();
  CHECK(ProcessGone(static_cast<pid_t>(a->runtime_pid())));
  CHECK(ProcessGone(static_cast<pid_t>(b->runtime_pid())));
}

// A loopback port with nothing listening on it.
std::string ClosedPort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  return absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
}

TEST_CASE("Connecting to an unreachable agent fails within the timeout, naming the address", "[edge_agent]") {
  const std::string address = ClosedPort();
  EdgeAgentClientOptions options;
  options.connect_timeout = absl::Milliseconds(500);
  const absl::Time before = absl::Now();
  auto client = EdgeAgentClient::Connect(address, options);
  const absl::Duration took = absl::Now() - before;
  REQUIRE_FALSE(client.ok());
  CHECK(client.status().code() == absl::StatusCode::kDeadlineExceeded);
  CHECK_THAT(std::string(client.status().message()), StartsWith(absl::StrCat("edge agent ", address, ": ")));
  CHECK(took < absl::Seconds(3));
}

TEST_CASE("A peer that accepts TCP but never speaks gRPC fails within the timeout", "[edge_agent]") {
  // A listening socket that is never accepted from: the TCP handshake completes, the HTTP/2 one never does.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(listener.get(), 8) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));

  EdgeAgentClientOptions options;
  options.connect_timeout = absl::Milliseconds(500);
  const absl::Time before = absl::Now();
  auto client = EdgeAgentClient::Connect(address, options);
  REQUIRE_FALSE(client.ok());
  CHECK_THAT(std::string(client.status().message()), Contains(address));
  CHECK(absl::Now() - before < absl::Seconds(3));
}

TEST_CASE("Calls to an agent that went away fail within their deadline, naming the address", "[edge_agent]") {
  auto agent = std::make_unique<Agent>(EdgeCapacity{1, 256 * kMiB});
  const std::string address = agent->address();
  EdgeAgentClientOptions options;
  options.rpc_timeout = absl::Seconds(1);
  auto client = agent->Client(options);
  REQUIRE(client->GetCapacity().ok());
  agent.reset();  // the agent shuts down; the client's connection breaks

  for (int attempt = 0; attempt < 2; ++attempt) {
    const absl::Time before = absl::Now();
    auto capacity = client->GetCapacity();
    REQUIRE_FALSE(capacity.ok());
    CHECK((capacity.status().code() == absl::StatusCode::kUnavailable ||
           capacity.status().code() == absl::StatusCode::kDeadlineExceeded));
    CHECK_THAT(std::string(capacity.status().message()),
               StartsWith(absl::StrCat("edge agent ", address, ": GetCapacity: ")));
    CHECK(absl::Now() - before < absl::Seconds(2));
  }
}

TEST_CASE("An address in use is refused with the address", "[edge_agent]") {
  Agent agent({1, 256 * kMiB});
  EdgeAgentService::Options options;
  options.capacity = {1, 256 * kMiB};
  auto second = EdgeAgentServer::Start(agent.address(), options, std::make_unique<ProcessVmRuntimeFactory>());
  REQUIRE_FALSE(second.ok());
  CHECK_THAT(std::string(second.status().message()), Contains(agent.address()));
}

TEST_CASE("Connect rejects a malformed address", "[edge_agent]") {
  auto client = EdgeAgentClient::Connect("no-port");
  REQUIRE_FALSE(client.ok());
  CHECK(client.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(client.status().message()), Contains("'no-port' is not host:port"));
}

}  // namespace
}  // namespace coalesce

namespace coalesce {
namespace {

EdgeCandidate Candidate(std::string address, uint32_t free_vcpus, double load_per_cpu, absl::Duration rtt,
                        uint64_t memory = 4096 * kMiB) {
  EdgeCandidate c;
  c.address = std::move(address);
  c.capacity.set_total_vcpus(free_vcpus + 1);
  c.capacity.set_reserved_vcpus(1);
  c.capacity.set_total_memory_bytes(memory);
  c.capacity.set_host_cpus(4);
  c.capacity.set_load_average_1m(load_per_cpu * 4);
  c.rtt = rtt;
  return c;
}

TEST_CASE("Discovery: vCPUs go to the acceptable candidates, nearest first, within their free vCPUs and the cap",
          "[edge_agent][discovery]") {
  std::vector<EdgeCandidate> found = {
      Candidate("far:1", 4, 0.1, absl::Milliseconds(5)),
      Candidate("near:1", 2, 0.1, absl::Microseconds(300)),
      Candidate("busy:1", 8, 3.0, absl::Microseconds(100)),
      Candidate("small:1", 8, 0.1, absl::Microseconds(200), 64 * kMiB),
  };
  found.push_back(EdgeCandidate{.address = "dead:1", .reachable = absl::UnavailableError("connection refused")});
  DiscoveryPolicy policy{.max_edge_load = 1.0, .guest_memory = 256 * kMiB};
  auto plan = PlanPlacement(found, {1, 2, 3}, policy);
  REQUIRE(plan.ok());
  REQUIRE(plan->size() == 2);
  CHECK((*plan)[0].address == "near:1");
  CHECK((*plan)[0].vcpus == std::vector<uint32_t>{1, 2});
  CHECK((*plan)[1].address == "far:1");
  CHECK((*plan)[1].vcpus == std::vector<uint32_t>{3});
  const std::string described = DescribeCandidates(found, *plan, policy);
  CHECK_THAT(described, Contains("near:1: round trip 0.300 ms, 2 of 3 vCPUs free, load 0.10 per CPU: vCPUs 1-2"));
  CHECK_THAT(described, Contains("busy:1: round trip 0.100 ms, 8 of 9 vCPUs free, load 3.00 per CPU: passed over: "
                                 "load 3.00 per CPU, over policies.max_edge_load 1.00"));
  CHECK_THAT(described, Contains("small:1"));
  CHECK_THAT(described, Contains("memory 64M free, the guest needs 256M"));
  CHECK_THAT(described, Contains("dead:1: passed over: unreachable: connection refused"));

  // The cap per edge spreads them; a latency bound drops the far one, and then they do not fit.
  policy.max_edge_vcpus = 1;
  auto capped = PlanPlacement(found, {1, 2}, policy);
  REQUIRE(capped.ok());
  CHECK((*capped)[0].vcpus == std::vector<uint32_t>{1});
  CHECK((*capped)[1].vcpus == std::vector<uint32_t>{2});
  policy.latency_bound = absl::Milliseconds(1);
  auto refused = PlanPlacement(found, {1, 2}, policy);
  REQUIRE(!refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(refused.status().message()), Contains("the candidates take 1 of the 2 vCPUs to lend (1-2)"));
  CHECK_THAT(std::string(refused.status().message()), Contains("far:1: round trip 5.000 ms"));
  CHECK_THAT(std::string(refused.status().message()), Contains("over policies.latency_bound_us 1000"));
}

TEST_CASE("Discovery: real agents answer with their capacity; a dead address is named, not waited for",
          "[edge_agent][discovery]") {
  Agent a({.vcpus = 2, .memory_bytes = 1024 * kMiB});
  Agent b({.vcpus = 3, .memory_bytes = 1024 * kMiB});
  const std::string dead = "127.0.0.1:1";
  const auto start = absl::Now();
  const std::vector<EdgeCandidate> found = QueryCandidates({a.address(), dead, b.address()}, {}, absl::Seconds(2));
  CHECK(absl::Now() - start < absl::Seconds(10));
  REQUIRE(found.size() == 3);
  CHECK(found[0].reachable.ok());
  CHECK(found[0].capacity.total_vcpus() == 2);
  CHECK(found[0].rtt > absl::ZeroDuration());
  CHECK(!found[1].reachable.ok());
  CHECK(found[2].capacity.total_vcpus() == 3);
  auto plan = PlanPlacement(found, {1, 2, 3, 4, 5}, {.guest_memory = 256 * kMiB});
  REQUIRE(plan.ok());
  size_t placed = 0;
  for (const DiscoveredEdge& e : *plan) placed += e.vcpus.size();
  CHECK(placed == 5);
  CHECK(!PlanPlacement(found, {1, 2, 3, 4, 5, 6}, {.guest_memory = 256 * kMiB}).ok());
}

}  // namespace
}  // namespace coalesce
