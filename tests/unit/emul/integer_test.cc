// The integer path (integer_semantics + native_stub) against the host: every case of integer_cases.inc runs
// directly on the host CPU (integer_cases.S) and through the executor on a SoftwareCpu, from the same random
// registers, flags and memory; registers, arithmetic flags and memory must agree. Plus the documented
// results of popcnt/lzcnt/tzcnt/bsf/bsr, #DE, LOCK #UD, faults and the allowlist's refusals.
#include <catch2/catch.hpp>
#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hypervisor/emul/instruction_decoder.h"
#include "hypervisor/emul/instruction_executor.h"
#include "hypervisor/emul/integer_semantics.h"
#include "tests/unit/emul/software_cpu.h"

namespace coalesce {
namespace {

struct HostFrame {
  uint64_t gpr[16];
  uint64_t rflags;
};

using HostCase = void (*)(HostFrame*);

}  // namespace
}  // namespace coalesce

#define CASE(name, ...)                                         \
  extern "C" void name(coalesce::HostFrame*);                   \
  extern "C" const uint8_t name##_insn[];                       \
  extern "C" const uint8_t name##_end[];
#include "integer_cases.inc"
#undef CASE

namespace coalesce {
namespace {

struct CaseInfo {
  const char* name;
  const char* text;
  HostCase host;
  const uint8_t* begin;
  const uint8_t* end;
};

const CaseInfo kCases[] = {
#define CASE(name, ...) {#name, #__VA_ARGS__, name, name##_insn, name##_end},
#include "integer_cases.inc"
#undef CASE
};

constexpr uint64_t kBase = 0x7f00'0000'0000ull;
constexpr uint64_t kOperand = kBase + 0x800;
constexpr size_t kMemBytes = 64;

absl::StatusOr<ExecutionResult> Run(SoftwareCpu& cpu, std::vector<uint8_t> bytes) {
  auto insn = DecodeInstruction64(bytes);
  if (!insn.ok()) return insn.status();
  return ExecuteInstruction(cpu, *insn);
}

// Operands every case can run with: pointers for memory forms, no #DE for divides.
void Constrain(const std::string& name, HostFrame& f) {
  if (name.rfind("k_m_", 0) == 0) {
    f.gpr[1] &= 7;  // index register
    f.gpr[12] = 0;  // second base register
  }
  if (name == "k_div64") {
    f.gpr[3] |= 1ull << 63;
    f.gpr[2] &= ~(1ull << 63);
  }
  if (name == "k_idiv32") {
    f.gpr[2] = (f.gpr[0] & 0x80000000u) ? 0xffffffffu : 0;
    f.gpr[1] = (f.gpr[1] & 0x7fffffffu) | 0x10000;
  }
}

TEST_CASE("integer instructions: emulator matches the host on random registers, flags and memory") {
  std::mt19937_64 rng(20240607);
  for (const CaseInfo& c : kCases) {
    const std::vector<uint8_t> bytes(c.begin, c.end);
    INFO(c.text);
    auto decoded = DecodeInstruction64(bytes);
    REQUIRE(decoded.ok());
    REQUIRE(decoded->length == bytes.size());
    REQUIRE(ClassifyInteger(*decoded).has_value());
    const bool mem = decoded->has_memory_operand() && ClassifyInteger(*decoded)->lea == false;
    for (int iter = 0; iter < 64; ++iter) {
      HostFrame f{};
      for (auto& r : f.gpr) {
        // Mix full-width randoms with small values and zero so bit scans and counts see edge cases.
        const uint64_t v = rng();
        r = iter % 4 == 0 ? (v & 0xff) : iter % 4 == 1 ? (v >> (v & 63)) : iter % 8 == 2 ? 0 : v;
      }
      f.rflags = 0x2 | (rng() & 0x8d5);
      Constrain(c.name, f);
      uint8_t host_mem[kMemBytes];
      for (auto& b : host_mem) b = static_cast<uint8_t>(rng());

      SoftwareCpu cpu(kBase, 0x2000);
      std::memcpy(cpu.At(kOperand), host_mem, kMemBytes);
      std::copy(std::begin(f.gpr), std::end(f.gpr), cpu.regs.gpr.begin());
      cpu.regs.gpr[4] = rng();  // RSP: any value, the instruction must not care
      cpu.regs.rflags = f.rflags | kRflagsIf;
      cpu.regs.rip = 0xffff'ffff'8100'0000ull;
      if (mem) cpu.regs.gpr[6] = kOperand;

      HostFrame h = f;
      if (mem) h.gpr[6] = reinterpret_cast<uint64_t>(host_mem);
      c.host(&h);

      auto r = ExecuteInstruction(cpu, *decoded);
      REQUIRE(r.ok());
      REQUIRE(cpu.injected.empty());
      CHECK(cpu.regs.rip == 0xffff'ffff'8100'0000ull + bytes.size());
      for (int i = 0; i < 16; ++i) {
        if (i == 4 || (mem && i == 6)) continue;
        INFO("register " << i << " iteration " << iter);
        CHECK(cpu.regs.gpr[i] == h.gpr[i]);
      }
      CHECK((cpu.regs.rflags & 0x8d5) == (h.rflags & 0x8d5));
      CHECK((cpu.regs.rflags & kRflagsIf) != 0);  // non-arithmetic flags are the guest's
      CHECK(std::memcmp(cpu.At(kOperand), host_mem, kMemBytes) == 0);
    }
  }
}

struct ScanCase {
  std::vector<uint8_t> bytes;
  uint64_t source;
  uint64_t dest_before;
  uint64_t dest_after;
  bool zf;
  bool cf;
};

TEST_CASE("popcnt, lzcnt, tzcnt, bsf, bsr give the documented results and ZF/CF") {
  // popcnt rax, rdi; lzcnt/tzcnt eax, edi; bsf/bsr ax, di (and 64-bit).
  const std::vector<uint8_t> popcnt64{0xf3, 0x48, 0x0f, 0xb8, 0xc7};
  const std::vector<uint8_t> lzcnt32{0xf3, 0x0f, 0xbd, 0xc7};
  const std::vector<uint8_t> tzcnt16{0x66, 0xf3, 0x0f, 0xbc, 0xc7};
  const std::vector<uint8_t> bsf64{0x48, 0x0f, 0xbc, 0xc7};
  const std::vector<uint8_t> bsr32{0x0f, 0xbd, 0xc7};
  const ScanCase cases[] = {
      {popcnt64, 0xff00ff00ff00ff00ull, 7, 32, false, false},
      {popcnt64, 0, 7, 0, true, false},
      {lzcnt32, 0, 7, 32, false, true},  // source 0: operand size, CF=1
      {lzcnt32, 0x80000000u, 7, 0, true, false},  // result 0: ZF=1
      {lzcnt32, 0x0001ffffu, 7, 15, false, false},
      {tzcnt16, 0, 0xaaaa'bbbb'cccc'ddddull, 0xaaaa'bbbb'cccc'0010ull, false, true},
      {tzcnt16, 0x1, 0xaaaa'bbbb'cccc'ddddull, 0xaaaa'bbbb'cccc'0000ull, true, false},
      {tzcnt16, 0x1000'0000'0000'8000ull, 0, 15, false, false},
      {bsf64, 0x1000'0000'0000'0000ull, 0, 60, false, false},
      {bsf64, 0, 0x1234, 0x1234, true, false},  // source 0: ZF=1, destination kept (as the host does)
      {bsr32, 0x00f0'0000u, 0, 23, false, false},
      {bsr32, 1, ~0ull, 0, false, false},       // 32-bit result zero-extends
  };
  for (const ScanCase& c : cases) {
    SoftwareCpu cpu(kBase, 0x1000);
    cpu.regs.gpr[7] = c.source;
    cpu.regs.gpr[0] = c.dest_before;
    cpu.regs.rflags = 0x2 | 0x8d5;
    auto r = Run(cpu, c.bytes);
    REQUIRE(r.ok());
    INFO(r->mnemonic << " source " << c.source);
    CHECK(cpu.regs.gpr[0] == c.dest_after);
    CHECK(((cpu.regs.rflags & kRflagsZf) != 0) == c.zf);
    if (r->mnemonic != "bsf" && r->mnemonic != "bsr") CHECK(((cpu.regs.rflags & kRflagsCf) != 0) == c.cf);
  }
}

TEST_CASE("the failing instruction from the Debian 6.1 boot completes: popcnt rax, rdi") {
  SoftwareCpu cpu(kBase, 0x1000);
  cpu.regs.rip = 0xffffffff81597201ull;
  cpu.regs.gpr[7] = 0x0000'0000'0000'f00full;
  auto r = Run(cpu, {0xf3, 0x48, 0x0f, 0xb8, 0xc7, 0x41, 0x01, 0xc0});
  REQUIRE(r.ok());
  CHECK(r->mnemonic == "popcnt");
  CHECK(cpu.regs.gpr[0] == 8);
  CHECK(cpu.regs.rip == 0xffffffff81597206ull);
}

TEST_CASE("div and idiv raise #DE instead of running, and change nothing") {
  struct DivCase {
    std::vector<uint8_t> bytes;
    uint64_t rax, rdx, rbx;
  };
  const DivCase cases[] = {
      {{0x48, 0xf7, 0xf3}, 5, 0, 0},                           // div rbx, rbx = 0
      {{0x48, 0xf7, 0xf3}, 0, 7, 7},                           // div rbx: quotient overflows
      {{0x48, 0xf7, 0xfb}, 0, 1ull << 63, ~0ull},              // idiv rbx: -2^127 / -1
      {{0xf7, 0xfb}, 0x80000000u, 0xffffffffu, 0xffffffffu},  // idiv ebx: INT_MIN / -1
      {{0xf6, 0xf3}, 0x1000, 0, 0x10},                        // div bl: 4096/16 = 256 overflows
      {{0x66, 0xf7, 0xfb}, 0x0000, 0x4000, 0x1},               // idiv bx: 2^30 / 1 overflows
  };
  for (const DivCase& c : cases) {
    SoftwareCpu cpu(kBase, 0x1000);
    cpu.regs.gpr[0] = c.rax;
    cpu.regs.gpr[2] = c.rdx;
    cpu.regs.gpr[3] = c.rbx;
    cpu.regs.rip = 0x4000;
    auto r = Run(cpu, c.bytes);
    REQUIRE(r.ok());
    REQUIRE(cpu.injected.size() == 1);
    CHECK(cpu.injected[0] == Fault::DivideError());
    CHECK(cpu.regs.rip == 0x4000);
    CHECK(cpu.register_writes == 0);
  }
  // The boundary that still fits: idiv bx with dx:ax = -32768*1.
  SoftwareCpu cpu(kBase, 0x1000);
  cpu.regs.gpr[0] = 0x8000;
  cpu.regs.gpr[2] = 0xffff;
  cpu.regs.gpr[3] = 1;
  auto r = Run(cpu, {0x66, 0xf7, 0xfb});
  REQUIRE(r.ok());
  CHECK(cpu.injected.empty());
  CHECK((cpu.regs.gpr[0] & 0xffff) == 0x8000);
}

TEST_CASE("memory forms fault like the guest's paging says, before changing anything") {
  SoftwareCpu cpu(kBase, 0x2000);
  cpu.SetPage(kBase + 0x1000, true, false);  // read-only second page
  cpu.regs.gpr[6] = kBase + 0x1000;
  cpu.regs.gpr[0] = 1;
  cpu.regs.rip = 0x4000;
  // add [rsi], rax: write to a read-only page -> #PF(P|W) at the operand.
  auto r = Run(cpu, {0x48, 0x01, 0x06});
  REQUIRE(r.ok());
  REQUIRE(cpu.injected.size() == 1);
  CHECK(cpu.injected[0] == Fault::PageFault(kBase + 0x1000, kPfPresent | kPfWrite));
  CHECK(cpu.register_writes == 0);
  // mov rax, [rsi] from it works.
  cpu.injected.clear();
  std::memcpy(cpu.At(kBase + 0x1000), "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
  r = Run(cpu, {0x48, 0x8b, 0x06});
  REQUIRE(r.ok());
  CHECK(cpu.injected.empty());
  CHECK(cpu.regs.gpr[0] == 0x8877665544332211ull);
  // A non-canonical address: #GP(0).
  cpu.regs.gpr[6] = 0x8000'0000'0000'0000ull;
  r = Run(cpu, {0x48, 0x8b, 0x06});
  REQUIRE(r.ok());
  REQUIRE(cpu.injected.size() == 1);
  CHECK(cpu.injected[0] == Fault::GeneralProtection(0));
}

TEST_CASE("gs-relative operands use the GS base; lea ignores it") {
  SoftwareCpu cpu(kBase, 0x1000);
  cpu.regs.segment_base[static_cast<size_t>(SegmentReg::kGs)] = kBase + 0x100;
  cpu.regs.gpr[3] = 0x20;
  std::memcpy(cpu.At(kBase + 0x120), "\x01\x00\x00\x00\x00\x00\x00\x00", 8);
  cpu.regs.gpr[0] = 41;
  auto r = Run(cpu, {0x65, 0x48, 0x03, 0x03});  // add rax, gs:[rbx]
  REQUIRE(r.ok());
  CHECK(cpu.regs.gpr[0] == 42);
  r = Run(cpu, {0x65, 0x48, 0x8d, 0x43, 0x10});  // lea rax, gs:[rbx+0x10]
  REQUIRE(r.ok());
  CHECK(cpu.regs.gpr[0] == 0x30);
  // RIP-relative: mov eax, [rip+0x10] at RIP kBase+0x200 reads kBase+0x216.
  cpu.regs.rip = kBase + 0x200;
  std::memcpy(cpu.At(kBase + 0x216), "\xef\xbe\xad\xde", 4);
  r = Run(cpu, {0x8b, 0x05, 0x10, 0x00, 0x00, 0x00});
  REQUIRE(r.ok());
  CHECK(cpu.regs.gpr[0] == 0xdeadbeefull);
}

TEST_CASE("LOCK is #UD on register forms and non-lockable instructions") {
  for (auto bytes : {std::vector<uint8_t>{0xf0, 0x48, 0x01, 0xd8} /* lock add rax, rbx */,
                     std::vector<uint8_t>{0xf0, 0x48, 0x8b, 0x06} /* lock mov rax, [rsi] */,
                     std::vector<uint8_t>{0xf0, 0x48, 0x39, 0x06} /* lock cmp [rsi], rax */}) {
    SoftwareCpu cpu(kBase, 0x1000);
    cpu.regs.gpr[6] = kBase;
    auto r = Run(cpu, bytes);
    REQUIRE(r.ok());
    REQUIRE(cpu.injected.size() == 1);
    CHECK(cpu.injected[0] == Fault::InvalidOpcode());
  }
}

TEST_CASE("the allowlist refuses stack, branch, system, I/O and string instructions") {
  for (auto bytes : {
           std::vector<uint8_t>{0x50},                    // push rax
           std::vector<uint8_t>{0x58},                    // pop rax
           std::vector<uint8_t>{0xff, 0xd0},              // call rax
           std::vector<uint8_t>{0xff, 0xe0},              // jmp rax
           std::vector<uint8_t>{0xff, 0x30},              // push [rax]
           std::vector<uint8_t>{0xc3},                    // ret
           std::vector<uint8_t>{0x9c},                    // pushf
           std::vector<uint8_t>{0x9d},                    // popf
           std::vector<uint8_t>{0xfa},                    // cli
           std::vector<uint8_t>{0xf4},                    // hlt
           std::vector<uint8_t>{0xec},                    // in al, dx
           std::vector<uint8_t>{0xf3, 0xa4},              // rep movsb
           std::vector<uint8_t>{0x0f, 0x22, 0xd8},        // mov cr3, rax
           std::vector<uint8_t>{0x8e, 0xd8},              // mov ds, ax
           std::vector<uint8_t>{0x0f, 0xa2},              // cpuid
           std::vector<uint8_t>{0x0f, 0x31},              // rdtsc
           std::vector<uint8_t>{0x0f, 0x05},              // syscall
           std::vector<uint8_t>{0x48, 0x0f, 0xa3, 0x06},  // bt [rsi], rax: bit offset beyond the operand
           std::vector<uint8_t>{0x0f, 0xb8, 0xc7},        // 0f b8 without F3 (jmpe)
           std::vector<uint8_t>{0xf2, 0x0f, 0xbc, 0xc7},  // F2 0f bc
       }) {
    auto insn = DecodeInstruction64(bytes);
    REQUIRE(insn.ok());
    INFO(insn->BytesText());
    CHECK_FALSE(ClassifyInteger(*insn).has_value());
  }
}

TEST_CASE("rdrand and prefetch complete") {
  SoftwareCpu cpu(kBase, 0x1000);
  cpu.regs.gpr[6] = kBase;
  auto r = Run(cpu, {0x0f, 0x18, 0x0e});  // prefetcht0 [rsi]
  REQUIRE(r.ok());
  CHECK(r->mnemonic == "prefetch");
  // rdrand rax: retried as software must; the host generator delivers within a few tries.
  bool delivered = false;
  for (int i = 0; i < 100 && !delivered; ++i) {
    cpu.regs.gpr[0] = 0;
    r = Run(cpu, {0x48, 0x0f, 0xc7, 0xf0});
    REQUIRE(r.ok());
    CHECK(r->mnemonic == "rdrand");
    delivered = (cpu.regs.rflags & kRflagsCf) != 0;
  }
  CHECK(delivered);
}

TEST_CASE("fwait: nothing normally, #MF with an unmasked exception pending, #NM with MP+TS") {
  SoftwareCpu cpu(kBase, 0x1000);
  cpu.extended.image.assign(4096, 0);
  cpu.regs.rip = 0x1000;
  auto r = Run(cpu, {0x9b});
  REQUIRE(r.ok());
  CHECK(r->mnemonic == "fwait");
  CHECK(cpu.regs.rip == 0x1001);
  CHECK(cpu.injected.empty());
  cpu.extended.image[2] = 0x81;  // FSW: IE | ES
  r = Run(cpu, {0x9b});
  REQUIRE(r.ok());
  REQUIRE(cpu.injected.size() == 1);
  CHECK(cpu.injected[0].vector == kVectorX87);
  CHECK(cpu.regs.rip == 0x1001);
  cpu.injected.clear();
  cpu.regs.cr0 |= kCr0Mp | kCr0Ts;
  r = Run(cpu, {0x9b});
  REQUIRE(r.ok());
  REQUIRE(cpu.injected.size() == 1);
  CHECK(cpu.injected[0] == Fault::DeviceNotAvailable());
}

TEST_CASE("native execution is thread-safe") {
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &mismatches] {
      for (int i = 0; i < 2000; ++i) {
        SoftwareCpu cpu(kBase, 0x1000);
        cpu.regs.gpr[7] = (static_cast<uint64_t>(t) << 32) | static_cast<uint64_t>(i);
        auto insn = DecodeInstruction64(std::vector<uint8_t>{0xf3, 0x48, 0x0f, 0xb8, 0xc7});
        auto r = ExecuteInstruction(cpu, *insn);
        if (!r.ok() || cpu.regs.gpr[0] != static_cast<uint64_t>(__builtin_popcountll(cpu.regs.gpr[7]))) {
          ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(mismatches == 0);
}

}  // namespace
}  // namespace coalesce

namespace coalesce {
namespace {

TEST_CASE("ldmxcsr/stmxcsr: MXCSR in the state image, as the host loads and stores it") {
  SoftwareCpu cpu(kBase, 0x1000);
  cpu.extended.xcr0 = 0x3;
  cpu.extended.image.assign(4096, 0);
  const uint32_t value = 0x1f80 | 0x6000 | 0x8000;  // RC=11, FZ
  std::memcpy(cpu.At(kBase + 0x10), &value, 4);
  cpu.regs.gpr[6] = kBase + 0x10;
  auto r = Run(cpu, {0x0f, 0xae, 0x16});  // ldmxcsr [rsi]
  REQUIRE(r.ok());
  CHECK(r->mnemonic == "ldmxcsr");
  uint32_t image_mxcsr;
  std::memcpy(&image_mxcsr, cpu.extended.image.data() + 24, 4);
  CHECK(image_mxcsr == value);
  // The host agrees on the round trip of the same value.
  uint32_t saved, host_out;
  asm volatile("stmxcsr %0" : "=m"(saved));
  asm volatile("ldmxcsr %1\n\tstmxcsr %0\n\tldmxcsr %2" : "=m"(host_out) : "m"(value), "m"(saved));
  CHECK(host_out == value);
  r = Run(cpu, {0x0f, 0xae, 0x5e, 0x20});  // stmxcsr [rsi+0x20]
  REQUIRE(r.ok());
  uint32_t stored;
  std::memcpy(&stored, cpu.At(kBase + 0x30), 4);
  CHECK(stored == value);
  // Reserved bits: #GP(0), state unchanged.
  const uint32_t bad = 0x10000;
  std::memcpy(cpu.At(kBase + 0x10), &bad, 4);
  r = Run(cpu, {0x0f, 0xae, 0x16});
  REQUIRE(r.ok());
  REQUIRE(cpu.injected.size() == 1);
  CHECK(cpu.injected[0] == Fault::GeneralProtection(0));
  std::memcpy(&image_mxcsr, cpu.extended.image.data() + 24, 4);
  CHECK(image_mxcsr == value);
}

}  // namespace
}  // namespace coalesce
