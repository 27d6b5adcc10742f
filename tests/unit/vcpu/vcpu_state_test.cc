// The wire form of a vCPU's state (hypervisor/vcpu/vcpu_state.h): every part round-trips byte for byte, and
// what a broken or hostile peer sends is refused with the reason. (Capture and restore on a real vCPU:
// tests/kvm_emul/vcpu_state_test.cc.)
#include "hypervisor/vcpu/vcpu_state.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

namespace coalesce {
namespace {

template <typename T>
void Scramble(T* v, std::mt19937& rng) {
  auto* p = reinterpret_cast<uint8_t*>(v);
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(rng());
}

VcpuState Sample() {
  std::mt19937 rng(7);
  VcpuState s;
  Scramble(&s.regs, rng);
  Scramble(&s.sregs, rng);
  s.xsave.resize(4096);
  for (auto& b : s.xsave) b = static_cast<uint8_t>(rng());
  Scramble(&s.xcrs, rng);
  Scramble(&s.debugregs, rng);
  Scramble(&s.events, rng);
  Scramble(&s.lapic, rng);
  s.msrs = {{0xc0000082, 0xffffffff81000000ULL}, {0x277, 0x0007040600070406ULL}};
  s.tsc_offset = -123456789;
  return s;
}

TEST_CASE("vCPU state: the wire form round-trips every part") {
  const VcpuState s = Sample();
  const std::vector<uint8_t> bytes = EncodeVcpuState(s);
  auto back = DecodeVcpuState(bytes);
  REQUIRE(back.ok());
  CHECK(std::memcmp(&back->regs, &s.regs, sizeof(s.regs)) == 0);
  CHECK(std::memcmp(&back->sregs, &s.sregs, sizeof(s.sregs)) == 0);
  CHECK(back->xsave == s.xsave);
  CHECK(std::memcmp(&back->xcrs, &s.xcrs, sizeof(s.xcrs)) == 0);
  CHECK(std::memcmp(&back->debugregs, &s.debugregs, sizeof(s.debugregs)) == 0);
  CHECK(std::memcmp(&back->events, &s.events, sizeof(s.events)) == 0);
  CHECK(std::memcmp(&back->lapic, &s.lapic, sizeof(s.lapic)) == 0);
  CHECK(back->msrs == s.msrs);
  CHECK(back->tsc_offset == s.tsc_offset);
  CHECK(EncodeVcpuState(*back) == bytes);
  VcpuState no_tsc = s;
  no_tsc.tsc_offset.reset();
  auto without = DecodeVcpuState(EncodeVcpuState(no_tsc));
  REQUIRE(without.ok());
  CHECK(!without->tsc_offset.has_value());
}

TEST_CASE("vCPU state: truncated, oversized or foreign input is refused") {
  const std::vector<uint8_t> bytes = EncodeVcpuState(Sample());
  auto message = [](std::vector<uint8_t> b) {
    auto s = DecodeVcpuState(b);
    return s.ok() ? std::string("accepted") : std::string(s.status().message());
  };
  CHECK_THAT(message({}), Catch::Contains("empty"));
  std::vector<uint8_t> v = bytes;
  v[0] = 9;
  CHECK_THAT(message(v), Catch::Contains("version 9, expected 1"));
  // Every proper prefix is refused (no read past the end, no partial state).
  for (size_t n = 1; n < bytes.size(); n += 97) {
    CHECK(message(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(n))) != "accepted");
  }
  v = bytes;
  v.push_back(0);
  CHECK_THAT(message(v), Catch::Contains("trailing bytes"));
  v = bytes;
  v[1] = 0xff;  // the regs part's length
  CHECK_THAT(message(v), Catch::Contains("truncated registers"));
}

}  // namespace
}  // namespace coalesce
