// FlagParser: both spellings of a value, switches, aliases, positional arguments, required flags, and the
// common setters' checks; every error names the flag.
#include "hypervisor/base/flag_parser.h"

#include <catch2/catch.hpp>

namespace coalesce {
namespace {

using Catch::Contains;

struct Parsed {
  bool help = false, verbose = false, announce = false;
  std::string name, announce_as;
  std::vector<std::string> tags, rest;
  uint32_t count = 7;
  double wait = 1;
  std::string mode;
  int fd = -1;
};

absl::Status Parse(Parsed& p, const std::vector<std::string>& args, bool positional = false) {
  FlagParser flags;
  flags.Switch("--help", &p.help)
      .Alias("-h", "--help")
      .Switch("--verbose", &p.verbose)
      .Value("--name", StoreNonEmpty(&p.name, "a name"))
      .Value("--tag", AppendText(&p.tags))
      .Value("--count", StoreUint32(&p.count, 1, 10))
      .Value("--wait", StoreSeconds(&p.wait, 0.5, 60))
      .Value("--mode", StoreChoice(&p.mode, {"fast", "slow"}))
      .Value("--fd", StoreFd(&p.fd))
      .OptionalValue("--announce", &p.announce, StoreNonEmpty(&p.announce_as, "a name"));
  if (positional) flags.Positional(&p.rest);
  return flags.Parse(args);
}

std::string Error(const std::vector<std::string>& args) {
  Parsed p;
  absl::Status st = Parse(p, args);
  REQUIRE_FALSE(st.ok());
  return std::string(st.message());
}

TEST_CASE("flag parser: values in both spellings, switches, aliases, repeats", "[flag_parser]") {
  Parsed p;
  REQUIRE(Parse(p, {"--name", "a", "--tag=x", "--tag", "y=z", "--count=3", "--wait", "2.5", "-h", "--verbose", "--mode",
                    "slow", "--fd=0"})
              .ok());
  CHECK(p.name == "a");
  CHECK(p.tags == std::vector<std::string>{"x", "y=z"});
  CHECK(p.count == 3);
  CHECK(p.wait == 2.5);
  CHECK(p.help);
  CHECK(p.verbose);
  CHECK(p.mode == "slow");
  CHECK(p.fd == 0);
  Parsed defaults;
  REQUIRE(Parse(defaults, {}).ok());
  CHECK(defaults.count == 7);
  CHECK_FALSE(defaults.help);
}

TEST_CASE("flag parser: a value may look like a flag when it follows its flag", "[flag_parser]") {
  Parsed p;
  REQUIRE(Parse(p, {"--name", "--verbose"}).ok());
  CHECK(p.name == "--verbose");
  CHECK_FALSE(p.verbose);
}

TEST_CASE("flag parser: an optional value only with '='", "[flag_parser]") {
  Parsed bare;
  REQUIRE(Parse(bare, {"--announce", "--verbose"}).ok());
  CHECK(bare.announce);
  CHECK(bare.announce_as.empty());
  CHECK(bare.verbose);
  Parsed named;
  REQUIRE(Parse(named, {"--announce=lab"}).ok());
  CHECK(named.announce);
  CHECK(named.announce_as == "lab");
  CHECK(Error({"--announce="}) == "--announce needs a name");
}

TEST_CASE("flag parser: errors name the flag and the value", "[flag_parser]") {
  CHECK(Error({"--frobnicate"}) == "unknown flag '--frobnicate'");
  CHECK(Error({"--frobnicate=1"}) == "unknown flag '--frobnicate'");
  CHECK(Error({"extra"}) == "unexpected argument 'extra'");
  CHECK(Error({"--name"}) == "--name needs a value");
  CHECK(Error({"--name="}) == "--name needs a name");
  CHECK(Error({"--verbose=yes"}) == "--verbose takes no value");
  CHECK(Error({"--count", "two"}) == "--count: 'two' is not a number");
  CHECK(Error({"--count", "3x"}) == "--count: '3x' is not a number");
  CHECK(Error({"--count", "-1"}) == "--count: '-1' is not a number");
  CHECK(Error({"--count", ""}) == "--count: '' is not a number");
  CHECK(Error({"--count", "11"}) == "--count: 11 is out of range: between 1 and 10");
  CHECK(Error({"--count", "0"}) == "--count: 0 is out of range: between 1 and 10");
  CHECK(Error({"--count", "99999999999"}) == "--count: '99999999999' is not a number");
  CHECK_THAT(Error({"--wait", "0.1"}), Contains("--wait: '0.1' is not a number of seconds from 0.5 to 60"));
  CHECK_THAT(Error({"--wait", "nan"}), Contains("--wait: 'nan' is not a number of seconds"));
  CHECK(Error({"--mode", "medium"}) == "--mode: 'medium' is not one of fast, slow");
  CHECK(Error({"--fd", "-3"}) == "--fd: '-3' is not a file descriptor");
  CHECK(Error({"--name", "a", "--count", "0", "--frobnicate"}) == "--count: 0 is out of range: between 1 and 10");
}

TEST_CASE("flag parser: positional arguments where the command takes them", "[flag_parser]") {
  Parsed p;
  REQUIRE(Parse(p, {"attach", "--name", "n", "10.0.0.1:7001", "vcpus=2", "-"}, /*positional=*/true).ok());
  CHECK(p.rest == std::vector<std::string>{"attach", "10.0.0.1:7001", "vcpus=2", "-"});
  CHECK(p.name == "n");
}

TEST_CASE("flag parser: required flags are reported together; Seen", "[flag_parser]") {
  std::string a, b, c;
  FlagParser flags;
  flags.Value("--a", StoreText(&a)).Value("--b", StoreText(&b)).Value("--c", StoreText(&c));
  flags.Require("--a").Require("--b").Require("--c");
  absl::Status st = flags.Parse({"--b="});
  CHECK(st.message() == "missing --a, --c");
  CHECK(flags.Seen("--b"));  // an empty value counts as given
  CHECK_FALSE(flags.Seen("--a"));
  REQUIRE(flags.Parse({"--a", "1", "--b", "2", "--c=3"}).ok());
  CHECK(a + b + c == "123");
}

TEST_CASE("flag parser: 64-bit values", "[flag_parser]") {
  uint64_t bytes = 0;
  int64_t offset = 0;
  FlagParser flags;
  flags.Value("--bytes", StoreUint64(&bytes, 1)).Value("--offset", StoreInt64(&offset));
  REQUIRE(flags.Parse({"--bytes=18446744073709551615", "--offset", "-1234"}).ok());
  CHECK(bytes == UINT64_MAX);
  CHECK(offset == -1234);
  CHECK(flags.Parse({"--bytes=0"}).message() == "--bytes: 0 is out of range: between 1 and 18446744073709551615");
}

TEST_CASE("ParseCommandLine: go on, help, or the usage status", "[flag_parser]") {
  auto run = [](std::vector<std::string> args) {
    bool help = false;
    std::string name;
    FlagParser flags;
    flags.Switch("--help", &help).Value("--name", StoreText(&name));
    return ParseCommandLine(flags, args, help, "coalesce test", "usage: coalesce test [--name NAME]\n", 2);
  };
  CHECK(run({"--name", "x"}) == std::nullopt);
  CHECK(run({"--help"}) == 0);
  CHECK(run({"--name"}) == 2);
  CHECK(run({"--bogus", "--help"}) == 2);  // an error wins over --help given later
}

}  // namespace
}  // namespace coalesce
