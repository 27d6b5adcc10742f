// `coalesce run` flags: what each stores, what the later validation refuses, and errors that name the flag.
#include "hypervisor/cli/run_options.h"

#include <catch2/catch.hpp>

namespace coalesce {
namespace {

using Catch::Contains;

std::string Error(const std::vector<std::string>& args) {
  absl::StatusOr<RunOptions> o = ParseRunOptions(args);
  REQUIRE_FALSE(o.ok());
  return std::string(o.status().message());
}

TEST_CASE("run options: every kind of flag", "[run_options]") {
  absl::StatusOr<RunOptions> o = ParseRunOptions({"--kernel",
                                                  "k.elf",
                                                  "--vcpus=4",
                                                  "--memory",
                                                  "512M",
                                                  "--max-memory=1G",
                                                  "--max-vcpus",
                                                  "8",
                                                  "--edge",
                                                  "10.0.0.2:7001=2-3",
                                                  "--edge=10.0.0.3:7001=4",
                                                  "--disk",
                                                  "a.qcow2",
                                                  "--insecure",
                                                  "--stats",
                                                  "--cpu=host",
                                                  "--tls-ca",
                                                  "ca.pem",
                                                  "--name",
                                                  "vm1",
                                                  "--home-vcpus",
                                                  "2",
                                                  "--halt-poll-us=0",
                                                  "--append",
                                                  "console=ttyS0 quiet"});
  REQUIRE(o.ok());
  CHECK(o->kernel == "k.elf");
  CHECK(o->vcpus == 4);
  CHECK(o->vcpus_set);
  CHECK(o->memory == 512ull << 20);
  CHECK(o->memory_set);
  CHECK(o->max_memory == "1G");
  CHECK(o->max_vcpus == 8);
  CHECK(o->edges == std::vector<std::string>{"10.0.0.2:7001=2-3", "10.0.0.3:7001=4"});
  CHECK(o->disks == std::vector<std::string>{"a.qcow2"});
  CHECK(o->insecure);
  CHECK(o->print_stats);
  CHECK(o->cpu_model == "host");
  CHECK(o->tls.ca == "ca.pem");
  CHECK(o->name == "vm1");
  CHECK(o->home_vcpus == 2);
  CHECK(o->halt_poll_us == 0);
  CHECK(o->append == "console=ttyS0 quiet");
  CHECK(ValidateRunOptions(*o).ok());

  absl::StatusOr<RunOptions> defaults = ParseRunOptions({"--kernel", "k"});
  REQUIRE(defaults.ok());
  CHECK(defaults->vcpus == 1);
  CHECK_FALSE(defaults->vcpus_set);
  CHECK(defaults->memory == kDefaultMemory);
  CHECK_FALSE(defaults->memory_set);
  CHECK(defaults->halt_poll_us == 200);  // KVM's halt_poll_ns default
  CHECK(ParseRunOptions({"-h"})->help);
}

TEST_CASE("run options: errors name the flag", "[run_options]") {
  CHECK_THAT(Error({"--kernel"}), Contains("--kernel needs a value"));
  CHECK_THAT(Error({"--frobnicate"}), Contains("unknown flag '--frobnicate' (see coalesce run --help)"));
  CHECK_THAT(Error({"guest.elf"}), Contains("unexpected argument 'guest.elf'"));
  CHECK_THAT(Error({"--vcpus", "two"}), Contains("--vcpus: 'two' is not a number"));
  CHECK_THAT(Error({"--max-vcpus", "0"}), Contains("--max-vcpus: 0 is out of range: between 1 and 255"));
  CHECK_THAT(Error({"--home-vcpus", "0"}), Contains("--home-vcpus: 0 is out of range: between 1 and 255"));
  CHECK_THAT(Error({"--memory", "lots"}), Contains("--memory"));
  CHECK_THAT(Error({"--halt-poll-us", "200000"}), Contains("--halt-poll-us: 200000 is out of range: between 0 and 100000"));
  CHECK_THAT(Error({"--max-memory", "1Q"}), Contains("--max-memory"));
  CHECK_THAT(Error({"--cpu", "fast"}), Contains("--cpu: 'fast' is not one of host, baseline, auto"));
  CHECK_THAT(Error({"--tls-key="}), Contains("--tls-key needs a file"));
  CHECK_THAT(Error({"--insecure=yes"}), Contains("--insecure takes no value"));
}

TEST_CASE("run options: validation after the profile is merged", "[run_options]") {
  auto validate = [](std::vector<std::string> args) {
    absl::StatusOr<RunOptions> o = ParseRunOptions(args);
    REQUIRE(o.ok());
    return ValidateRunOptions(*o);
  };
  CHECK_THAT(std::string(validate({}).message()), Contains("no kernel"));
  CHECK_THAT(std::string(validate({"--kernel", "k", "--vcpus", "0"}).message()),
             Contains("--vcpus: 0 is out of range"));
  CHECK_THAT(std::string(validate({"--kernel", "k", "--vcpus", "256"}).message()), Contains("between 1 and 255"));
  CHECK_THAT(std::string(validate({"--kernel", "k", "--vcpus", "3", "--max-vcpus", "2"}).message()),
             Contains("fewer than the 3 vCPUs"));
  CHECK_THAT(std::string(validate({"--kernel", "k", "--memory", "8M"}).message()), Contains("at least 16M"));
}

}  // namespace
}  // namespace coalesce
