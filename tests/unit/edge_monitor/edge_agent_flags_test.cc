#include <signal.h>

#include <catch2/catch.hpp>

#include "edge_monitor/edge_agent_flags.h"
#include "edge_monitor/edge_announcement.h"
#include "edge_monitor/edge_agent_main.h"
#include "edge_monitor/host_request_validator.h"
#include "edge_monitor/profile_loader.h"
#include "edge_monitor/remote_node_args.h"
#include "edge_monitor/runtime_stop_reason.h"

namespace coalesce {
namespace {

using Catch::Contains;

const EdgeCapacity kDefaults{8, 16ull << 30};

TEST_CASE("edge flags: --listen and --capacity", "[edge_flags]") {
  auto flags = ParseEdgeAgentFlags({"--listen", "127.0.0.1:7001", "--capacity", "vcpus=2,memory=1G"}, kDefaults);
  REQUIRE(flags.ok());
  CHECK(flags->listen == "127.0.0.1:7001");
  CHECK(flags->capacity.vcpus == 2);
  CHECK(flags->capacity.memory_bytes == 1ull << 30);
  CHECK_FALSE(flags->help);

  auto equals_form = ParseEdgeAgentFlags({"--listen=[::]:7001", "--capacity=vcpus=3", "--log-level=debug"}, kDefaults);
  REQUIRE(equals_form.ok());
  CHECK(equals_form->listen == "[::]:7001");
  CHECK(equals_form->capacity.vcpus == 3);
  CHECK(equals_form->capacity.memory_bytes == kDefaults.memory_bytes);
  CHECK(equals_form->log_level == LogLevel::kDebug);

  auto defaults = ParseEdgeAgentFlags({"--listen", "0.0.0.0:0"}, kDefaults);
  REQUIRE(defaults.ok());
  CHECK(defaults->capacity.vcpus == 8);
  CHECK(ParseEdgeAgentFlags({"--help"}, kDefaults)->help);
}

TEST_CASE("edge flags: errors name the flag", "[edge_flags]") {
  auto message = [](std::vector<std::string> args) {
    auto flags = ParseEdgeAgentFlags(args, kDefaults);
    REQUIRE_FALSE(flags.ok());
    return std::string(flags.status().message());
  };
  CHECK_THAT(message({}), Contains("--listen HOST:PORT is required"));
  CHECK_THAT(message({"--listen"}), Contains("--listen needs a value"));
  CHECK_THAT(message({"--listen", "7001"}), Contains("--listen: '7001' is not host:port"));
  CHECK_THAT(message({"--listen", "h:1", "--capacity", "memory=abc"}), Contains("memory: 'abc' is not a size"));
  CHECK_THAT(message({"--listen", "h:1", "--capacity", "vcpus=0"}), Contains("vcpus: '0' is not a positive number"));
  CHECK_THAT(message({"--listen", "h:1", "--capacity", "disks=2"}), Contains("unknown key 'disks'"));
  CHECK_THAT(message({"--listen", "h:1", "--frobnicate"}), Contains("unknown flag '--frobnicate'"));
  CHECK_THAT(message({"--listen", "h:1", "extra"}), Contains("unexpected argument 'extra'"));
}

TEST_CASE("RunEdgeAgentMain: --help exits 0, usage errors exit 2", "[edge_flags]") {
  char edge[] = "edge";
  char help[] = "--help";
  char* help_argv[] = {edge, help, nullptr};
  CHECK(RunEdgeAgentMain(2, help_argv) == 0);
  char listen[] = "--listen";
  char* missing_value[] = {edge, listen, nullptr};
  CHECK(RunEdgeAgentMain(2, missing_value) == 2);
}

TEST_CASE("remote-node argv round-trips", "[remote_node_args]") {
  RemoteNodeArgs args;
  args.vm_id = "vm-1";
  args.guest_memory_bytes = 1ull << 30;
  args.guest_vcpu_count = 4;
  args.vcpu_ids = {2, 3};
  args.home_address = "10.0.0.1:7100";
  args.tsc_offset = -1234;
  args.node_id = 5;
  args.cpu_model = "host";
  args.ready_fd = 3;
  args.data_plane_key_fd = 0;
  args.link = "latency=2000000ns,jitter=500000ns,bandwidth=1200Mbit";
  args.kvm_fd = 4;
  args.userfaultfd_device_fd = 5;
  auto parsed = RemoteNodeArgs::Parse(args.ToArgs());
  REQUIRE(parsed.ok());
  CHECK(parsed->vm_id == "vm-1");
  CHECK(parsed->guest_memory_bytes == 1ull << 30);
  CHECK(parsed->guest_vcpu_count == 4);
  CHECK(parsed->vcpu_ids == std::vector<uint32_t>{2, 3});
  CHECK(parsed->home_address == "10.0.0.1:7100");
  CHECK(parsed->tsc_offset == -1234);
  CHECK(parsed->node_id == 5);
  CHECK(parsed->cpu_model == "host");
  CHECK(parsed->ready_fd == 3);
  CHECK(parsed->data_plane_key_fd == 0);
  CHECK(parsed->link == args.link);
  CHECK(parsed->kvm_fd == 4);
  CHECK(parsed->userfaultfd_device_fd == 5);
  args.link.clear();  // no emulation: no flag at all
  args.kvm_fd = args.userfaultfd_device_fd = -1;  // the runtime opens the devices itself: no flags
  for (const std::string& flag : args.ToArgs()) {
    CHECK(flag.rfind("--link", 0) != 0);
    CHECK(flag.rfind("--kvm-fd", 0) != 0);
    CHECK(flag.rfind("--userfaultfd-device-fd", 0) != 0);
  }
  CHECK_FALSE(RemoteNodeArgs::Parse({"--kvm-fd=-1"}).ok());
}

TEST_CASE("remote-node argv errors", "[remote_node_args]") {
  auto missing = RemoteNodeArgs::Parse({"--vm-id=a"});
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(std::string(missing.status().message()), Contains("missing --memory, --vcpu-count, --vcpus, --home"));
  auto out_of_range = RemoteNodeArgs::Parse({"--vm-id=a", "--memory=4096", "--vcpu-count=2", "--vcpus=2",
                                             "--home=h:1", "--ready-fd=3", "--data-plane-key-fd=0"});
  REQUIRE_FALSE(out_of_range.ok());
  CHECK_THAT(std::string(out_of_range.status().message()), Contains("vCPU 2 is not below --vcpu-count=2"));
  CHECK_FALSE(RemoteNodeArgs::Parse({"--bogus=1"}).ok());
  auto bad_link = RemoteNodeArgs::Parse({"--link=latency=fast"});
  REQUIRE_FALSE(bad_link.ok());
  CHECK_THAT(std::string(bad_link.status().message()), Contains("--link: 'latency=fast': latency 'fast' is not a duration"));
  auto no_key = RemoteNodeArgs::Parse({"--vm-id=a", "--memory=4096", "--vcpu-count=2", "--vcpus=1", "--home=h:1",
                                       "--ready-fd=3"});
  REQUIRE_FALSE(no_key.ok());
  CHECK_THAT(std::string(no_key.status().message()), Contains("missing --data-plane-key-fd"));
  CHECK_FALSE(RemoteNodeArgs::Parse({"--vm-id=a", "--memory=4096", "--vcpu-count=2", "--vcpus=1", "--home=h:1",
                                     "--ready-fd=3", "--data-plane-key-fd=-1"})
                  .ok());
  auto bad_model = RemoteNodeArgs::Parse({"--vm-id=a", "--memory=4096", "--vcpu-count=2", "--vcpus=1",
                                          "--home=h:1", "--ready-fd=3", "--cpu-model=486"});
  REQUIRE_FALSE(bad_model.ok());
  CHECK_THAT(std::string(bad_model.status().message()), Contains("--cpu-model: '486' is not one of host, baseline"));
  CHECK_FALSE(RemoteNodeArgs::Parse({"positional"}).ok());
}

TEST_CASE("remote-node argv: a memory node runs no vCPUs and says what it lends", "[remote_node_args]") {
  RemoteNodeArgs args;
  args.vm_id = "vm-m";
  args.guest_memory_bytes = 1 << 30;
  args.guest_vcpu_count = 2;
  args.home_address = "127.0.0.1:9";
  args.ready_fd = 3;
  args.data_plane_key_fd = 0;
  args.lent_memory_bytes = 256 << 20;
  auto parsed = RemoteNodeArgs::Parse(args.ToArgs());
  REQUIRE(parsed.ok());
  CHECK(parsed->vcpu_ids.empty());
  CHECK(parsed->lent_memory_bytes == 256u << 20);
  const std::vector<std::string> base = {"--vm-id=a", "--memory=1073741824", "--vcpu-count=2", "--home=h:1",
                                         "--ready-fd=3", "--data-plane-key-fd=0"};
  auto with = [&base](std::vector<std::string> more) {
    more.insert(more.begin(), base.begin(), base.end());
    return RemoteNodeArgs::Parse(more);
  };
  auto neither = with({"--vcpus="});
  REQUIRE_FALSE(neither.ok());
  CHECK_THAT(std::string(neither.status().message()), Contains("runs vCPUs (--vcpus=LIST) or lends memory"));
  CHECK_FALSE(with({"--vcpus=1", "--lent-memory=4096"}).ok());
  CHECK_FALSE(with({"--vcpus=", "--lent-memory=1000"}).ok());
  CHECK(with({"--vcpus=", "--lent-memory=8192"}).ok());
}

TEST_CASE("remote-node argv: the guest's hotplug area travels with its memory", "[remote_node_args]") {
  RemoteNodeArgs args;
  args.vm_id = "vm-h";
  args.guest_memory_bytes = 256 << 20;
  args.guest_vcpu_count = 2;
  args.vcpu_ids = {1};
  args.home_address = "127.0.0.1:9";
  args.ready_fd = 3;
  args.data_plane_key_fd = 0;
  args.hotplug_memory_bytes = 3ull << 27;  // three 128 MiB slots
  auto parsed = RemoteNodeArgs::Parse(args.ToArgs());
  REQUIRE(parsed.ok());
  CHECK(parsed->hotplug_memory_bytes == 3ull << 27);
  args.hotplug_memory_bytes = 0;
  parsed = RemoteNodeArgs::Parse(args.ToArgs());
  REQUIRE(parsed.ok());
  CHECK(parsed->hotplug_memory_bytes == 0);  // none: no flag
  const std::vector<std::string> base = {"--vm-id=a",  "--memory=268435456", "--vcpu-count=2",       "--vcpus=1",
                                         "--home=h:1", "--ready-fd=3",       "--data-plane-key-fd=0"};
  for (auto [bad, why] : std::vector<std::pair<std::string, std::string>>{
           {"--hotplug-memory=0", "--hotplug-memory: 0 is out of range"},
           {"--hotplug-memory=4096", "--hotplug-memory: '4096' is not a multiple of 128 MiB"},
           {"--hotplug-memory=x", "--hotplug-memory: 'x' is not a number"},
           {"--hotplug-memory=34493956096" /* 257 slots */, "multiple of 128 MiB up to 256 slots"}}) {
    std::vector<std::string> argv = base;
    argv.push_back(bad);
    auto refused = RemoteNodeArgs::Parse(argv);
    REQUIRE_FALSE(refused.ok());
    CHECK_THAT(std::string(refused.status().message()), Contains(why));
  }
}

TEST_CASE("runtime stop reasons in words; a value the runtime does not know reads as the signal") {
  CHECK(DescribeRuntimeStop(SIGTERM, static_cast<int>(RuntimeStopReason::kLeaseRevoked)) ==
        "the lease was revoked by the edge's operator");
  CHECK(DescribeRuntimeStop(SIGTERM, static_cast<int>(RuntimeStopReason::kLeaseExpired)) ==
        "the lease expired (not renewed in time)");
  CHECK(DescribeRuntimeStop(SIGTERM, static_cast<int>(RuntimeStopReason::kAgentShutdown)) ==
        "the edge agent is shutting down");
  CHECK(DescribeRuntimeStop(SIGTERM, 0) == "stopped by signal 15");
  CHECK(DescribeRuntimeStop(SIGINT, 77) == "stopped by signal 2");
}

}  // namespace
}  // namespace coalesce

namespace coalesce {
namespace {

TEST_CASE("edge flags: --max-load and --min-battery", "[edge_flags]") {
  auto f = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", "--max-load", "0.75", "--min-battery=25"}, {});
  REQUIRE(f.ok());
  CHECK(f->limits.max_load_per_cpu == 0.75);
  CHECK(f->limits.min_battery_percent == 25u);
  auto none = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0"}, {});
  REQUIRE(none.ok());
  CHECK(!none->limits.max_load_per_cpu.has_value());
  auto bad_load = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", "--max-load", "-1"}, {});
  REQUIRE(!bad_load.ok());
  CHECK(std::string(bad_load.status().message()).find("--max-load '-1'") != std::string::npos);
  auto bad_battery = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", "--min-battery", "101"}, {});
  REQUIRE(!bad_battery.ok());
  CHECK(std::string(bad_battery.status().message()).find("--min-battery '101' is not a percentage") !=
        std::string::npos);
}

TEST_CASE("edge flags: --departure-grace", "[edge_flags]") {
  auto f = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", "--departure-grace", "40"}, {});
  REQUIRE(f.ok());
  CHECK(f->departure_grace == absl::Seconds(40));
  auto none = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0"}, {});
  REQUIRE(none.ok());
  CHECK(none->departure_grace == absl::Seconds(15));
  for (const char* bad : {"0", "601", "5s", ""}) {
    auto b = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", "--departure-grace", bad}, {});
    REQUIRE(!b.ok());
    CHECK(std::string(b.status().message()).find("is not a number of seconds (1..600)") != std::string::npos);
  }
}

TEST_CASE("edge flags: --max-lease and --control", "[edge_flags]") {
  auto f = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", "--max-lease", "30", "--control=/tmp/x.sock"}, {});
  REQUIRE(f.ok());
  CHECK(f->max_lease == absl::Seconds(30));
  CHECK(f->control == "/tmp/x.sock");
  auto none = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0"}, {});
  REQUIRE(none.ok());
  CHECK(none->max_lease == absl::Seconds(300));
  CHECK(none->control.empty());
  for (const char* bad : {"0", "86401", "1m", ""}) {
    auto b = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", "--max-lease", bad}, {});
    REQUIRE(!b.ok());
    CHECK(std::string(b.status().message()).find("is not a number of seconds (1..86400)") != std::string::npos);
  }
  auto empty = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", "--control", ""}, {});
  REQUIRE(!empty.ok());
  CHECK_THAT(std::string(empty.status().message()), Catch::StartsWith("edge: --control needs a path"));
}

TEST_CASE("edge flags: --announce with and without a name", "[edge_flags]") {
  auto plain = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", "--announce"}, {});
  REQUIRE(plain.ok());
  CHECK(plain->announce);
  CHECK(plain->announce_name.empty());
  auto named = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", "--announce=lab edge 3"}, {});
  REQUIRE(named.ok());
  CHECK(named->announce);
  CHECK(named->announce_name == "lab edge 3");
  auto none = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0"}, {});
  REQUIRE(none.ok());
  CHECK_FALSE(none->announce);
  for (const std::string& bad : {std::string("--announce="), "--announce=" + std::string(64, 'x')}) {
    auto b = ParseEdgeAgentFlags({"--listen", "127.0.0.1:0", bad}, {});
    REQUIRE(!b.ok());
    CHECK(std::string(b.status().message()).find("1 to 63 bytes") != std::string::npos);
  }
}

TEST_CASE("the announced TXT record follows the capacity snapshot", "[edge_announcement]") {
  pb::Capacity c;
  c.set_total_vcpus(8);
  c.set_reserved_vcpus(3);
  c.set_total_memory_bytes(4ull << 30);
  c.set_reserved_memory_bytes(1ull << 30);
  c.set_running_vms(2);
  c.set_host_cpus(4);
  c.set_load_average_1m(1.0);
  CHECK(AnnouncementTxt(c, false) == std::vector<std::string>{"txtvers=1", "vcpus=5/8", "memory=3072/4096",
                                                                "load=0.25", "battery=none", "vms=2", "tls=0"});
  c.set_battery_percent(42);
  c.set_on_battery(true);
  const std::vector<std::string> txt = AnnouncementTxt(c, true);
  CHECK(txt[4] == "battery=42,discharging");
  CHECK(txt[6] == "tls=1");
  c.set_on_battery(false);
  CHECK(AnnouncementTxt(c, true)[4] == "battery=42,charging");
  // More reserved than offered (a capacity lowered under running VMs) reads as none free, never a wrap.
  c.set_reserved_vcpus(9);
  CHECK(AnnouncementTxt(c, true)[1] == "vcpus=0/8");
  for (const std::string& t : AnnouncementTxt(c, true)) CHECK(t.size() <= 255);
}

}  // namespace
}  // namespace coalesce
