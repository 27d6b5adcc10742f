// Node messages (vcpu_remote/node_message.h): every type round-trips through Encode/Decode; the decoder refuses
// what a broken or hostile peer may send with an error naming the problem (the fuzz target node_message covers
// arbitrary bytes).
#include "vcpu_remote/node_message.h"

#include <catch2/catch.hpp>

namespace coalesce::node_msg {
namespace {

std::vector<NodeMessage> OneOfEach() {
  ApicMessage ipi{.vector = 0xfd, .delivery_mode = DeliveryMode::kFixed, .destination = 3, .level_triggered = true,
                  .level_assert = true, .source_apic_id = 2};
  return {
      Hello{.node_id = 1, .dsm_port = 40000, .host = "10.0.0.2"},
      Peers{.peers = {{.node_id = 1, .dsm_port = 1, .host = "a"}, {.node_id = 2, .dsm_port = 2, .host = "b"}}},
      IoRequest{.request_id = 7, .vcpu_id = 1, .kind = IoKind::kPioWrite, .address = 0x3f8, .size = 1, .data = {'A'}},
      IoRequest{.request_id = 8, .vcpu_id = 2, .kind = IoKind::kMmioRead, .address = 0xfec00010, .size = 4},
      IoReply{.request_id = 8, .data = {1, 2, 3, 4}},
      Interrupt{.message = ipi},
      Eoi{.vector = 0x21},
      Stop{.exit_status = -3, .reason = "guest triple fault"},
      MeshReady{.node_id = 2},
      Echo{.token = 0x1122334455667788ULL},
      EchoReply{.token = 9},
      VcpuEvict{.vcpu_id = 3},
      VcpuDetached{.vcpu_id = 3},
      VcpuMigrate{.vcpu_id = 3, .run_state = VcpuRunState::kHalted, .halted_with_interrupts = true,
                  .state = {1, 2, 3}},
      VcpuArrived{.vcpu_id = 3},
      DirectedInterrupt{.apic_id = 3, .message = ipi},
      Leaving{.reason = "agent stopping"},
      Pause{.token = 11, .paused = true},
      PauseDone{.token = 11, .paused = true, .vcpus = 2, .error = ""},
      PauseDone{.token = 12, .paused = false, .vcpus = 0, .error = "vCPU 3 did not stop in 5 s"},
  };
}

TEST_CASE("node messages: every type round-trips") {
  for (const NodeMessage& m : OneOfEach()) {
    const std::vector<uint8_t> bytes = Encode(m);
    INFO("type " << static_cast<int>(bytes[1]));
    REQUIRE(bytes.size() >= 2);
    CHECK(bytes[0] == kVersion);
    auto back = Decode(bytes);
    REQUIRE(back.ok());
    CHECK(back->index() == m.index());
    CHECK(Encode(*back) == bytes);
  }
  auto echo = Decode(Encode(Echo{.token = 42}));
  REQUIRE(echo.ok());
  CHECK(std::get<Echo>(*echo).token == 42);
  auto reply = Decode(Encode(EchoReply{.token = 43}));
  REQUIRE(reply.ok());
  CHECK(std::get<EchoReply>(*reply).token == 43);
  auto migrate = Decode(Encode(VcpuMigrate{.vcpu_id = 2, .run_state = VcpuRunState::kWaitForSipi,
                                           .halted_with_interrupts = false, .state = {9, 8}}));
  REQUIRE(migrate.ok());
  const auto& m = std::get<VcpuMigrate>(*migrate);
  CHECK(m.vcpu_id == 2);
  CHECK(m.run_state == VcpuRunState::kWaitForSipi);
  CHECK(!m.halted_with_interrupts);
  CHECK(m.state == std::vector<uint8_t>{9, 8});
  auto directed = Decode(Encode(DirectedInterrupt{.apic_id = 5, .message = {.vector = 0x31, .destination = 5}}));
  REQUIRE(directed.ok());
  CHECK(std::get<DirectedInterrupt>(*directed).apic_id == 5);
  CHECK(std::get<DirectedInterrupt>(*directed).message.vector == 0x31);
  auto pause = Decode(Encode(Pause{.token = 77, .paused = false}));
  REQUIRE(pause.ok());
  CHECK(std::get<Pause>(*pause).token == 77);
  CHECK(!std::get<Pause>(*pause).paused);
  auto done = Decode(Encode(PauseDone{.token = 78, .paused = true, .vcpus = 3, .error = "late"}));
  REQUIRE(done.ok());
  const auto& d = std::get<PauseDone>(*done);
  CHECK(d.token == 78);
  CHECK(d.paused);
  CHECK(d.vcpus == 3);
  CHECK(d.error == "late");
}

TEST_CASE("node messages: malformed input is refused with the reason") {
  auto message = [](std::vector<uint8_t> bytes) {
    auto m = Decode(bytes);
    return m.ok() ? std::string("accepted") : std::string(m.status().message());
  };
  CHECK_THAT(message({}), Catch::Contains("truncated header"));
  CHECK_THAT(message({1, 9, 0, 0, 0, 0, 0, 0, 0, 0}), Catch::Contains("version 1, expected 4"));
  CHECK_THAT(message({kVersion, 200}), Catch::Contains("unknown type"));
  std::vector<uint8_t> echo = Encode(Echo{.token = 1});
  echo.pop_back();
  CHECK_THAT(message(echo), Catch::Contains("truncated"));
  echo = Encode(EchoReply{.token = 1});
  echo.push_back(0);
  CHECK_THAT(message(echo), Catch::Contains("trailing bytes"));
  std::vector<uint8_t> io = Encode(IoRequest{.request_id = 1, .kind = IoKind::kPioRead, .address = 0x60, .size = 1});
  io[2 + 8 + 4 + 1 + 8] = 3;  // the size byte: 3 is not an access size
  CHECK_THAT(message(io), Catch::Contains("bad access size"));
  io = Encode(IoRequest{.request_id = 1, .kind = IoKind::kPioRead, .address = 0x60, .size = 1});
  io[2 + 8 + 4] = 9;  // the kind byte
  CHECK_THAT(message(io), Catch::Contains("bad access kind"));
  std::vector<uint8_t> migrate = Encode(VcpuMigrate{.vcpu_id = 1, .run_state = VcpuRunState::kRunning, .state = {}});
  migrate[2 + 4] = 4;  // the run state: 4 is none
  CHECK_THAT(message(migrate), Catch::Contains("bad run state"));
  migrate = Encode(VcpuMigrate{.vcpu_id = 1, .run_state = VcpuRunState::kRunning, .state = {}});
  migrate[2 + 4 + 1] = 2;  // the halt flag
  CHECK_THAT(message(migrate), Catch::Contains("bad halt flag"));
  migrate = Encode(VcpuMigrate{.vcpu_id = 1, .run_state = VcpuRunState::kRunning, .state = {}});
  migrate[2 + 4 + 2 + 2] = 0x10;  // a state length of 1 MiB: over kMaxVcpuState
  CHECK_THAT(message(migrate), Catch::Contains("state too large"));
  std::vector<uint8_t> directed = Encode(DirectedInterrupt{.apic_id = 1, .message = {.vector = 0x30}});
  directed[2 + 4 + 1] = 3;  // delivery mode 3 is reserved
  CHECK_THAT(message(directed), Catch::Contains("bad delivery fields"));
  std::vector<uint8_t> pause = Encode(Pause{.token = 1, .paused = true});
  pause[2 + 8] = 2;  // the pause flag
  CHECK_THAT(message(pause), Catch::Contains("bad pause flag"));
  std::vector<uint8_t> done = Encode(PauseDone{.token = 1, .paused = true, .vcpus = 1, .error = "x"});
  done[2 + 8] = 7;
  CHECK_THAT(message(done), Catch::Contains("bad pause flag"));
  done = Encode(PauseDone{.token = 1, .paused = true, .vcpus = 1, .error = "x"});
  done.pop_back();  // the error string is one byte short of its length
  CHECK_THAT(message(done), Catch::Contains("truncated"));
}

}  // namespace
}  // namespace coalesce::node_msg
