// DecodeExit against kvm_run pages filled as KVM fills them: the typed exit names the right fields, and a
// handler's answer lands where KVM reads it on the next KVM_RUN.
#include "hypervisor/kvm/vcpu_exit.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

namespace coalesce {
namespace {

// A kvm_run page (KVM maps at least one page; string I/O data follows the structure at data_offset).
struct RunPage {
  std::vector<uint8_t> bytes = std::vector<uint8_t>(4096);
  kvm_run* run() { return reinterpret_cast<kvm_run*>(bytes.data()); }
};

TEST_CASE("DecodeExit: MSR exits point into kvm_run") {
  RunPage page;
  kvm_run* run = page.run();
  run->exit_reason = KVM_EXIT_X86_WRMSR;
  run->msr.index = 0x4b564d04;
  run->msr.data = 0x12341;
  run->msr.reason = KVM_MSR_EXIT_REASON_FILTER;
  VcpuExit e = DecodeExit(run);
  REQUIRE(std::holds_alternative<exit::MsrWrite>(e));
  auto& wr = std::get<exit::MsrWrite>(e);
  CHECK(wr.index == 0x4b564d04u);
  CHECK(wr.data == 0x12341u);
  *wr.error = 1;
  CHECK(run->msr.error == 1);
  CHECK(std::string(ExitKindName(e)) == "msr_write");

  run->exit_reason = KVM_EXIT_X86_RDMSR;
  run->msr.error = 0;
  e = DecodeExit(run);
  REQUIRE(std::holds_alternative<exit::MsrRead>(e));
  *std::get<exit::MsrRead>(e).data = 0xabcdef;
  CHECK(run->msr.data == 0xabcdefu);
  CHECK(std::string(ExitKindName(e)) == "msr_read");
}

TEST_CASE("DecodeExit: port I/O, MMIO and unknown reasons") {
  RunPage page;
  kvm_run* run = page.run();
  run->exit_reason = KVM_EXIT_IO;
  run->io.direction = KVM_EXIT_IO_OUT;
  run->io.size = 2;
  run->io.count = 3;
  run->io.port = 0x3f8;
  run->io.data_offset = 1024;
  std::memcpy(page.bytes.data() + 1024, "abcdef", 6);
  VcpuExit e = DecodeExit(run);
  REQUIRE(std::holds_alternative<exit::IoOut>(e));
  const auto& out = std::get<exit::IoOut>(e);
  CHECK(out.port == 0x3f8);
  CHECK(out.data.size() == 6);
  CHECK(out.data[5] == 'f');

  run->exit_reason = KVM_EXIT_MMIO;
  run->mmio.phys_addr = 0xfee000b0;
  run->mmio.len = 200;  // a length KVM never gives is clamped to the 8-byte buffer
  run->mmio.is_write = 1;
  e = DecodeExit(run);
  REQUIRE(std::holds_alternative<exit::MmioWrite>(e));
  CHECK(std::get<exit::MmioWrite>(e).addr == 0xfee000b0u);
  CHECK(std::get<exit::MmioWrite>(e).data.size() == 8);

  run->exit_reason = 0xdead;
  e = DecodeExit(run);
  REQUIRE(std::holds_alternative<exit::Unknown>(e));
  CHECK(std::get<exit::Unknown>(e).reason == 0xdeadu);
  CHECK(ExitKindIndex(e) < kExitKinds);
}

}  // namespace
}  // namespace coalesce
