#include <catch2/catch.hpp>

#include "edge_monitor/profile_loader.h"
#include "edge_monitor/profile_validator.h"
#include "profile_test_util.h"

namespace coalesce {
namespace {

using Catch::Contains;
using Catch::StartsWith;

constexpr const char* kTextProfile = R"(# two at home, two on an edge
guest {
  kernel: "bzImage"
  initrd: "initrd.gz"
  cmdline: "console=ttyS0"
  memory: "1G"
  vcpus: 4
}
home { vcpus: [0, 1] }
edge {
  name: "edge-a"
  address: "127.0.0.1:7001"
  vcpus: [2, 3]
}
)";

constexpr const char* kJsonProfile = R"({
  "guest": {"kernel": "bzImage", "initrd": "initrd.gz", "cmdline": "console=ttyS0", "memory": "1G", "vcpus": 4},
  "home": {"vcpus": [0, 1]},
  "edge": [{"name": "edge-a", "address": "127.0.0.1:7001", "vcpus": [2, 3]}]
})";

void CheckTwoPlusTwo(const pb::Profile& profile) {
  CHECK(profile.guest().kernel() == "bzImage");
  CHECK(profile.guest().initrd() == "initrd.gz");
  CHECK(profile.guest().cmdline() == "console=ttyS0");
  CHECK(profile.guest().memory() == "1G");
  CHECK(profile.guest().vcpus() == 4);
  REQUIRE(profile.home().vcpus_size() == 2);
  CHECK(profile.home().vcpus(1) == 1);
  REQUIRE(profile.edge_size() == 1);
  CHECK(profile.edge(0).name() == "edge-a");
  CHECK(profile.edge(0).address() == "127.0.0.1:7001");
  REQUIRE(profile.edge(0).vcpus_size() == 2);
  CHECK(profile.edge(0).vcpus(0) == 2);
  CHECK(ValidateProfile(profile).ok());
}

TEST_CASE("Profile format follows the file extension", "[profile]") {
  CHECK(*ProfileFormatForPath("a/vm.textproto") == ProfileFormat::kText);
  CHECK(*ProfileFormatForPath("vm.pbtxt") == ProfileFormat::kText);
  CHECK(*ProfileFormatForPath("vm.txtpb") == ProfileFormat::kText);
  CHECK(*ProfileFormatForPath("vm.json") == ProfileFormat::kJson);
  auto unknown = ProfileFormatForPath("vm.yaml");
  REQUIRE_FALSE(unknown.ok());
  CHECK_THAT(std::string(unknown.status().message()), Contains("vm.yaml") && Contains(".textproto"));
}

TEST_CASE("Text-format and JSON profiles load to the same message", "[profile]") {
  TempDir dir;
  auto text = LoadProfile(dir.Write("vm.textproto", kTextProfile));
  REQUIRE(text.ok());
  CheckTwoPlusTwo(*text);
  auto json = LoadProfile(dir.Write("vm.json", kJsonProfile));
  REQUIRE(json.ok());
  CheckTwoPlusTwo(*json);
  CHECK(text->SerializeAsString() == json->SerializeAsString());
}

TEST_CASE("Text-format errors name file, line and column", "[profile]") {
  TempDir dir;
  // A misspelt field on line 3; protobuf places the error at the token after the name (the ':', column 8).
  const std::string path = dir.Write("bad.textproto", "guest {\n  kernel: \"k\"\n  vpcus: 4\n}\n");
  auto result = LoadProfile(path);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(result.status().message()), StartsWith(path + ":3:8: ") && Contains("vpcus"));

  // A string where a number belongs, on line 2.
  auto wrong_type = ParseProfile("guest {\n  vcpus: \"four\"\n}\n", ProfileFormat::kText, "p.txtpb");
  REQUIRE_FALSE(wrong_type.ok());
  CHECK_THAT(std::string(wrong_type.status().message()), StartsWith("p.txtpb:2:"));

  // An unclosed message: the error is at the end of the input.
  auto unclosed = ParseProfile("guest {\n  vcpus: 4\n", ProfileFormat::kText, "p.txtpb");
  REQUIRE_FALSE(unclosed.ok());
  CHECK_THAT(std::string(unclosed.status().message()), StartsWith("p.txtpb:3:"));
}

TEST_CASE("JSON syntax errors name file, line and column", "[profile]") {
  // Missing comma after "vcpus": 4 -> the error is where "memory" starts, line 4 column 5.
  auto missing_comma = ParseProfile("{\n  \"guest\": {\n    \"vcpus\": 4\n    \"memory\": \"1G\"\n  }\n}\n",
                                    ProfileFormat::kJson, "vm.json");
  REQUIRE_FALSE(missing_comma.ok());
  CHECK_THAT(std::string(missing_comma.status().message()), StartsWith("vm.json:4:5: "));

  auto truncated = ParseProfile("{\n  \"guest\": {\n", ProfileFormat::kJson, "vm.json");
  REQUIRE_FALSE(truncated.ok());
  CHECK_THAT(std::string(truncated.status().message()), StartsWith("vm.json:3:1: ") && Contains("end of input"));

  auto empty = ParseProfile("", ProfileFormat::kJson, "vm.json");
  REQUIRE_FALSE(empty.ok());
  CHECK_THAT(std::string(empty.status().message()), StartsWith("vm.json:1:1: "));
}

TEST_CASE("JSON schema errors point at the offending member", "[profile]") {
  // Unknown member "bogus" at line 3, column 5.
  auto unknown = ParseProfile("{\n  \"guest\": {\n    \"bogus\": 1\n  }\n}\n", ProfileFormat::kJson, "vm.json");
  REQUIRE_FALSE(unknown.ok());
  CHECK_THAT(std::string(unknown.status().message()), StartsWith("vm.json:3:5: ") && Contains("bogus"));

  // An unknown member of the root object, line 2 column 3.
  auto unknown_root = ParseProfile("{\n  \"gust\": {}\n}\n", ProfileFormat::kJson, "vm.json");
  REQUIRE_FALSE(unknown_root.ok());
  CHECK_THAT(std::string(unknown_root.status().message()), StartsWith("vm.json:2:3: ") && Contains("gust"));

  // A number where a string belongs: the value at line 2, column 25.
  auto wrong_type = ParseProfile("{\n  \"guest\": {\"memory\": 12}\n}\n", ProfileFormat::kJson, "vm.json");
  REQUIRE_FALSE(wrong_type.ok());
  CHECK_THAT(std::string(wrong_type.status().message()), StartsWith("vm.json:2:23: ") && Contains("guest.memory"));

  // A bad array element inside a repeated message.
  auto bad_element = ParseProfile("{\"edge\": [\n  {\"address\": \"h:1\", \"vcpus\": [1, \"x\"]}\n]}",
                                  ProfileFormat::kJson, "vm.json");
  REQUIRE_FALSE(bad_element.ok());
  CHECK_THAT(std::string(bad_element.status().message()), StartsWith("vm.json:2:35: "));

  // lowerCamelCase JSON names are accepted by protobuf, and located too.
  auto camel = ParseProfile("{\n  \"home\": {\"dataPlaneAddress\": 5}\n}", ProfileFormat::kJson, "vm.json");
  REQUIRE_FALSE(camel.ok());
  CHECK_THAT(std::string(camel.status().message()), StartsWith("vm.json:2:32: "));
}

TEST_CASE("LoadProfile reports unreadable files with their path", "[profile]") {
  auto missing = LoadProfile("/nonexistent/dir/vm.textproto");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(missing.status().message()), Contains("/nonexistent/dir/vm.textproto"));
}

TEST_CASE("LoadAndValidateProfile prefixes validation errors with the path", "[profile]") {
  TempDir dir;
  const std::string path = dir.Write(
      "overlap.textproto",
      "guest { kernel: \"k\" memory: \"1G\" vcpus: 4 }\nhome { vcpus: [0, 1, 2] }\n"
      "edge { address: \"127.0.0.1:7001\" vcpus: [2, 3] }\n");
  auto result = LoadAndValidateProfile(path);
  REQUIRE_FALSE(result.ok());
  CHECK_THAT(std::string(result.status().message()),
             StartsWith(path + ": ") && Contains("vCPU 2 is placed more than once: on home and on edge 127.0.0.1:7001"));
}

TEST_CASE("The example profiles load and validate", "[profile][examples]") {
  for (const char* name : {"home_only.textproto", "home2_edge2.textproto", "home1_edges3.json"}) {
    INFO(name);
    auto profile = LoadAndValidateProfile(std::string(COALESCE_EXAMPLES_DIR) + "/" + name);
    REQUIRE(profile.ok());
    CHECK(profile->guest().vcpus() >= 2);
  }
  auto three = LoadProfile(std::string(COALESCE_EXAMPLES_DIR) + "/home1_edges3.json");
  REQUIRE(three.ok());
  CHECK(three->edge_size() == 3);
  CHECK(three->policies().latency_bound_us() == 2000);
}

}  // namespace
}  // namespace coalesce
