// int3, ud2, xgetbv, clac/stac, fences and the unhandled-instruction path.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "hypervisor/emul/instruction_decoder.h"
#include "hypervisor/emul/instruction_executor.h"
#include "tests/unit/emul/software_cpu.h"

namespace coalesce {
namespace {

constexpr uint64_t kBase = 0x7f00'0000'0000ull;

absl::StatusOr<ExecutionResult> Run(SoftwareCpu& cpu, std::vector<uint8_t> bytes) {
  auto insn = DecodeInstruction64(bytes);
  if (!insn.ok()) return insn.status();
  return ExecuteInstruction(cpu, *insn);
}

TEST_CASE("int3 retires, then raises #BP with RIP after the instruction") {
  SoftwareCpu cpu(kBase, 0x1000);
  cpu.regs.rip = 0xffff'ffff'8100'0000ull;
  cpu.regs.rflags = 0x2 | kRflagsRf;
  auto r = Run(cpu, {0xcc});
  REQUIRE(r.ok());
  CHECK(r->mnemonic == "int3");
  CHECK(cpu.regs.rip == 0xffff'ffff'8100'0001ull);
  CHECK((cpu.regs.rflags & kRflagsRf) == 0);
  REQUIRE(cpu.injected.size() == 1);
  CHECK(cpu.injected[0] == Fault::Breakpoint());
}

TEST_CASE("ud2 and LOCK on a non-lockable instruction raise #UD at the instruction") {
  for (auto bytes : {std::vector<uint8_t>{0x0f, 0x0b}, std::vector<uint8_t>{0xf0, 0x0f, 0x0b},
                     std::vector<uint8_t>{0xf0, 0x48, 0x0f, 0xae, 0x27} /* lock xsave64 */}) {
    SoftwareCpu cpu(kBase, 0x1000);
    cpu.regs.rip = 0x5000;
    auto r = Run(cpu, bytes);
    REQUIRE(r.ok());
    CHECK(cpu.regs.rip == 0x5000);
    CHECK(cpu.register_writes == 0);
    REQUIRE(cpu.injected.size() == 1);
    CHECK(cpu.injected[0] == Fault::InvalidOpcode());
  }
}

TEST_CASE("xgetbv reads XCR0 like the host") {
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  SoftwareCpu cpu(kBase, 0x1000);
  cpu.extended.xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  cpu.extended.image.assign(cpu.layout.StandardSize(cpu.extended.xcr0), 0);
  cpu.regs.gpr[0] = ~0ull;
  cpu.regs.gpr[2] = ~0ull;
  cpu.regs.gpr[1] = 0;
  auto r = Run(cpu, {0x0f, 0x01, 0xd0});
  REQUIRE(r.ok());
  CHECK(cpu.regs.gpr[0] == lo);
  CHECK(cpu.regs.gpr[2] == hi);
  cpu.regs.gpr[1] = 7;  // no such XCR
  REQUIRE(Run(cpu, {0x0f, 0x01, 0xd0}).ok());
  CHECK(cpu.injected.back() == Fault::GeneralProtection(0));
}

TEST_CASE("stac/clac flip RFLAGS.AC at CPL 0 and are #UD in user mode") {
  SoftwareCpu cpu(kBase, 0x1000);
  REQUIRE(Run(cpu, {0x0f, 0x01, 0xcb}).ok());
  CHECK((cpu.regs.rflags & kRflagsAc) != 0);
  REQUIRE(Run(cpu, {0x0f, 0x01, 0xca}).ok());
  CHECK((cpu.regs.rflags & kRflagsAc) == 0);
  cpu.regs.cpl = 3;
  REQUIRE(Run(cpu, {0x0f, 0x01, 0xcb}).ok());
  CHECK(cpu.injected.back() == Fault::InvalidOpcode());
}

TEST_CASE("unhandled instructions are reported, never guessed") {
  SoftwareCpu cpu(kBase, 0x1000);
  auto r = Run(cpu, {0xf3, 0x48, 0x0f, 0xc7, 0xf8});  // rdpid %rax
  CHECK(absl::IsUnimplemented(r.status()));
  CHECK(r.status().message().find("0f c7 f8") != std::string::npos);
  CHECK(cpu.register_writes == 0);
  CHECK(cpu.injected.empty());

  cpu.regs.long_mode_64 = false;
  CHECK(absl::IsUnimplemented(Run(cpu, {0xcc}).status()));
}

}  // namespace
}  // namespace coalesce

namespace coalesce {
namespace {

// pxor and the 128-bit moves against the host: the host computes a ^ b with pxor on the same inputs.
TEST_CASE("pxor, movdqu, movdqa, movups, movaps match the host CPU") {
  alignas(16) uint8_t a[16], b[16], host[16];
  for (int i = 0; i < 16; ++i) {
    a[i] = static_cast<uint8_t>(0x11 * i + 3);
    b[i] = static_cast<uint8_t>(0xa5 ^ (7 * i));
  }
  asm volatile("movdqu (%[a]), %%xmm3\n\tpxor (%[b]), %%xmm3\n\tmovdqu %%xmm3, (%[h])"
               :
               : [a] "r"(a), [b] "r"(b), [h] "r"(host)
               : "xmm3", "memory");
  SoftwareCpu cpu(kBase, 0x1000);
  cpu.extended.xcr0 = 0x3;
  cpu.extended.image.assign(cpu.layout.StandardSize(0x3), 0);
  std::memcpy(cpu.At(kBase), a, 16);
  std::memcpy(cpu.At(kBase + 0x10), b, 16);
  cpu.regs.gpr[0] = kBase;
  REQUIRE(Run(cpu, {0xf3, 0x0f, 0x6f, 0x18}).ok());              // movdqu (%rax), %xmm3
  REQUIRE(Run(cpu, {0x66, 0x0f, 0xef, 0x58, 0x10}).ok());        // pxor 0x10(%rax), %xmm3
  REQUIRE(Run(cpu, {0x66, 0x44, 0x0f, 0x6f, 0xfb}).ok());        // movdqa %xmm3, %xmm15
  REQUIRE(Run(cpu, {0x44, 0x0f, 0x29, 0x78, 0x20}).ok());        // movaps %xmm15, 0x20(%rax)
  REQUIRE(Run(cpu, {0x0f, 0x11, 0x58, 0x31}).ok());              // movups %xmm3, 0x31(%rax)
  CHECK(cpu.injected.empty());
  CHECK(std::memcmp(cpu.At(kBase + 0x20), host, 16) == 0);
  CHECK(std::memcmp(cpu.At(kBase + 0x31), host, 16) == 0);
  CHECK((cpu.extended.image[512] & 0x2) != 0);
  REQUIRE(Run(cpu, {0x66, 0x0f, 0x7f, 0x58, 0x31}).ok());        // movdqa %xmm3, 0x31(%rax): misaligned
  CHECK(cpu.injected.back() == Fault::GeneralProtection(0));
}

}  // namespace
}  // namespace coalesce
