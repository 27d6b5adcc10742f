// cmpxchg8b / cmpxchg16b: the executor on SoftwareCpu against the host CPU on the same inputs.
#include <catch2/catch.hpp>
#include <cstring>

#include "hypervisor/emul/instruction_decoder.h"
#include "hypervisor/emul/instruction_executor.h"
#include "tests/unit/emul/software_cpu.h"

namespace coalesce {
namespace {

constexpr uint64_t kBase = 0x7f00'0000'0000ull;
constexpr uint64_t kFlagsMask = 0x8d5;  // CF PF AF ZF SF OF

struct Inputs {
  uint64_t mem[2];
  uint64_t rax, rdx, rbx, rcx, rflags;
};
struct Outputs {
  uint64_t mem[2];
  uint64_t rax, rdx, rflags;
};

// The host executes `lock cmpxchg16b` (wide) or `lock cmpxchg8b` with RFLAGS preset.
Outputs RunOnHost(const Inputs& in, bool wide) {
  alignas(16) uint64_t mem[2] = {in.mem[0], in.mem[1]};
  uint64_t rax = in.rax, rdx = in.rdx, flags = in.rflags;
  uint64_t* p = mem;
  // The red zone is skipped before pushing so the compiler's locals below RSP stay intact; the operand is
  // addressed through a register because RSP moves.
  if (wide) {
    asm volatile(
        "sub $128, %%rsp\n\tpush %[fl]\n\tpopfq\n\tlock cmpxchg16b (%[p])\n\tpushfq\n\tpop %[fl]\n\tadd $128, %%rsp"
        : "+a"(rax), "+d"(rdx), [fl] "+r"(flags)
        : [p] "r"(p), "b"(in.rbx), "c"(in.rcx)
        : "cc", "memory");
  } else {
    asm volatile(
        "sub $128, %%rsp\n\tpush %[fl]\n\tpopfq\n\tlock cmpxchg8b (%[p])\n\tpushfq\n\tpop %[fl]\n\tadd $128, %%rsp"
        : "+a"(rax), "+d"(rdx), [fl] "+r"(flags)
        : [p] "r"(p), "b"(in.rbx), "c"(in.rcx)
        : "cc", "memory");
  }
  return {{mem[0], mem[1]}, rax, rdx, flags};
}

Outputs RunEmulated(const Inputs& in, bool wide, SoftwareCpu& cpu) {
  const uint64_t addr = kBase + 0x100;
  std::memcpy(cpu.At(addr), in.mem, 16);
  cpu.regs.gpr[0] = in.rax;
  cpu.regs.gpr[2] = in.rdx;
  cpu.regs.gpr[3] = in.rbx;
  cpu.regs.gpr[1] = in.rcx;
  cpu.regs.gpr[7] = addr;  // rdi
  cpu.regs.rflags = in.rflags;
  cpu.regs.rip = 0x1000;
  const uint8_t wide_bytes[] = {0xf0, 0x48, 0x0f, 0xc7, 0x0f};  // lock cmpxchg16b (%rdi)
  const uint8_t narrow_bytes[] = {0xf0, 0x0f, 0xc7, 0x0f};      // lock cmpxchg8b (%rdi)
  auto insn = wide ? DecodeInstruction64(wide_bytes) : DecodeInstruction64(narrow_bytes);
  REQUIRE(insn.ok());
  auto result = ExecuteInstruction(cpu, *insn);
  REQUIRE(result.ok());
  CHECK(!result->injected.has_value());
  CHECK(cpu.regs.rip == 0x1000u + insn->length);
  Outputs out{};
  std::memcpy(out.mem, cpu.At(addr), 16);
  out.rax = cpu.regs.gpr[0];
  out.rdx = cpu.regs.gpr[2];
  out.rflags = cpu.regs.rflags;
  return out;
}

TEST_CASE("cmpxchg16b and cmpxchg8b match the host CPU, success and failure") {
  const uint64_t a = 0x1111'2222'3333'4444ull, b = 0x5555'6666'7777'8888ull;
  const uint64_t c = 0x9999'aaaa'bbbb'ccccull, d = 0xdddd'eeee'ffff'0000ull;
  const Inputs cases[] = {
      {{a, b}, a, b, c, d, 0x202},                 // equal: stores rcx:rbx
      {{a, b}, a, b, c, d, 0x202 | kFlagsMask},    // equal, every arithmetic flag set before
      {{a, b}, a + 1, b, c, d, 0x202 | 0x40},      // low half differs, ZF set before
      {{a, b}, a, b ^ (1ull << 63), c, d, 0x203},  // high half differs
      {{a, b}, 0xffff'ffff'3333'4444ull, 0xffff'ffff'7777'8888ull, c, d, 0x202},  // 8b: equal low 32s, high garbage
      {{a, b}, 0xffff'ffff'0000'0000ull, 0xffff'ffff'0000'0001ull, c, d, 0x202},  // 8b: differs, high garbage
  };
  for (bool wide : {true, false}) {
    for (size_t i = 0; i < std::size(cases); ++i) {
      INFO("wide=" << wide << " case " << i);
      SoftwareCpu cpu(kBase, 0x4000);
      const Outputs host = RunOnHost(cases[i], wide);
      const Outputs emu = RunEmulated(cases[i], wide, cpu);
      CHECK(emu.mem[0] == host.mem[0]);
      CHECK(emu.mem[1] == host.mem[1]);
      CHECK(emu.rax == host.rax);
      CHECK(emu.rdx == host.rdx);
      CHECK((emu.rflags & kFlagsMask) == (host.rflags & kFlagsMask));
      CHECK(cpu.injected.empty());
    }
  }
}

TEST_CASE("cmpxchg16b faults: misaligned #GP, absent and read-only pages #PF, nothing changes") {
  const uint8_t bytes[] = {0xf0, 0x48, 0x0f, 0xc7, 0x0f};  // lock cmpxchg16b (%rdi)
  auto insn = DecodeInstruction64(bytes);
  REQUIRE(insn.ok());

  SECTION("misaligned") {
    SoftwareCpu cpu(kBase, 0x4000);
    cpu.regs.gpr[7] = kBase + 0x108;
    cpu.regs.rip = 0x1000;
    auto r = ExecuteInstruction(cpu, *insn);
    REQUIRE(r.ok());
    REQUIRE(cpu.injected.size() == 1);
    CHECK(cpu.injected[0] == Fault::GeneralProtection(0));
    CHECK(cpu.register_writes == 0);  // RIP stays on the faulting instruction
  }
  SECTION("not present, supervisor write") {
    SoftwareCpu cpu(kBase, 0x4000);
    cpu.SetPage(kBase + 0x2000, false, true);
    cpu.regs.gpr[7] = kBase + 0x2010;
    auto r = ExecuteInstruction(cpu, *insn);
    REQUIRE(r.ok());
    REQUIRE(cpu.injected.size() == 1);
    CHECK(cpu.injected[0] == Fault::PageFault(kBase + 0x2010, kPfWrite));
  }
  SECTION("read-only, user mode, comparison fails: still a write fault") {
    SoftwareCpu cpu(kBase, 0x4000);
    cpu.SetPage(kBase + 0x1000, true, false);
    cpu.regs.cpl = 3;
    cpu.regs.gpr[7] = kBase + 0x1020;
    cpu.regs.gpr[0] = 1;  // memory is 0: the comparison would fail
    auto r = ExecuteInstruction(cpu, *insn);
    REQUIRE(r.ok());
    REQUIRE(cpu.injected.size() == 1);
    CHECK(cpu.injected[0] == Fault::PageFault(kBase + 0x1020, kPfWrite | kPfUser | kPfPresent));
    CHECK(cpu.regs.gpr[0] == 1);
  }
}

}  // namespace
}  // namespace coalesce
