// The decoder against the assembler: every case below is assembled by the toolchain, then decoded; the
// decoded length must match the assembler's and the mnemonic the expected one.
#include <catch2/catch.hpp>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "hypervisor/emul/instruction_decoder.h"
#include "hypervisor/emul/memory_operand.h"

// Each case: one length byte, then the instruction bytes. A zero length ends the table.
asm(R"(
  .pushsection .rodata.emul_decode_cases, "a"
  .macro CASE insn:vararg
    .byte 2f - 1f
  1: \insn
  2:
  .endm
  .macro RAW len, bytes:vararg
    .byte \len
    .byte \bytes
  .endm
  .globl emul_decode_cases
emul_decode_cases:
  CASE int3
  CASE ud2
  CASE lock cmpxchg16b (%rdi)
  CASE cmpxchg16b 0x12345678(%r13,%r12,8)
  CASE lock cmpxchg8b -8(%rsp)
  CASE cmpxchg8b %fs:0x10(%rip)
  CASE lock cmpxchg16b %gs:(%rbx)
  CASE xsave (%rdi)
  CASE xsave64 0x40(%rdi)
  CASE xrstor64 (%rax,%rcx,1)
  CASE xrstor (%r8)
  CASE xsaveopt64 (%rsp)
  CASE xsavec64 0x1000(%rbp)
  CASE xsaves64 (%r12)
  CASE xrstors64 (%r13)
  CASE fxsave (%rdx)
  CASE fxsave64 (%rdx)
  CASE fxrstor64 0x7f(%rsi)
  CASE xgetbv
  CASE lfence
  CASE mfence
  CASE sfence
  CASE clac
  CASE stac
  CASE int $0x80
  CASE cmpxchg16b (%eax)
  RAW 6, 0x2e, 0x3e, 0x26, 0x0f, 0xc7, 0x09
  CASE mov $0x1122334455667788, %r9
  CASE movabs 0x1122334455667788, %al
  CASE addw $0x1234, 0x10(%rax)
  CASE addl $0x12345678, 0x10(%rax,%rbx,2)
  CASE testb $1, (%rax)
  CASE testl $0x10000, (%rax)
  CASE testw $0x100, 0x11(%rax)
  CASE enter $0x10, $1
  CASE ret $8
  CASE call .
  CASE jne .
  CASE jne .+0x1000
  CASE pshufd $0x1b, %xmm1, %xmm2
  CASE pshufb (%rax), %xmm3
  CASE palignr $4, %xmm1, %xmm2
  CASE rdtscp
  CASE wrmsr
  CASE shld $3, %rax, (%rbx)
  CASE btl $5, (%rcx)
  CASE paddd 0x20(%rsp), %xmm0
  CASE lock xadd %rax, 8(%rdi)
  CASE rep movsb
  CASE nopw 0x0(%rax,%rax,1)
  CASE endbr64
  CASE swapgs
  CASE vmovdqu (%rdi), %xmm0
  CASE vpermi2d %ymm7, %ymm6, %ymm8
  CASE vprord $0x10, %xmm3, %xmm3
  CASE vextracti128 $1, %ymm8, 0x10(%r9)
  CASE vzeroupper
  CASE vpaddd 0x40(%rsp), %zmm1, %zmm2
  CASE vmovdqa64 0x1000(%rax,%rbx,4), %zmm17
  CASE vpbroadcastd %xmm0, %ymm1
  CASE andn %rax, %rbx, %rcx
  CASE vpgatherdd %ymm2, (%rax,%ymm1,4), %ymm3
  CASE vmovdqu 0x11223344(%rip), %ymm15
  .byte 0
  .purgem CASE
  .purgem RAW
  .popsection
)");

extern "C" const uint8_t emul_decode_cases[];

namespace coalesce {
namespace {

const char* const kExpectedNames[] = {
    "int3",       "ud2",        "cmpxchg16b", "cmpxchg16b", "cmpxchg8b", "cmpxchg8b",  "cmpxchg16b", "xsave",
    "xsave64",    "xrstor64",   "xrstor",     "xsaveopt64", "xsavec64",  "xsaves64",   "xrstors64",  "fxsave",
    "fxsave64",   "fxrstor64",  "xgetbv",     "lfence",     "mfence",    "sfence",     "clac",       "stac",
    "int",        "cmpxchg16b", "cmpxchg8b",
};

TEST_CASE("decoded length and mnemonic match the assembler") {
  const uint8_t* p = emul_decode_cases;
  size_t index = 0;
  while (*p != 0) {
    const size_t len = *p++;
    std::vector<uint8_t> bytes(p, p + len);
    bytes.resize(len + 4, 0x90);  // trailing bytes must not be consumed
    auto insn = DecodeInstruction64(bytes);
    INFO("case " << index);
    REQUIRE(insn.ok());
    CHECK(insn->length == len);
    std::string expected = index < std::size(kExpectedNames) ? kExpectedNames[index] : "unknown";
    // SIMD instructions run natively (simd_forms.h) are named by their encoding.
    static const std::map<size_t, std::string> kSimdNames = {
        {39, "sse.66.0f.70"},      {40, "sse.66.0f38.00"},   {41, "sse.66.0f3a.0f"},  {46, "sse.66.0f.fe"},
        {52, "vex128.f3.0f.6f"},   {53, "evex256.66.0f38.76"}, {54, "evex128.66.0f.72"},
        {55, "vex256.66.0f3a.39"}, {56, "vex128.0f.77"},    {57, "evex512.66.0f.fe"},
        {58, "evex512.66.w1.0f.6f"}, {59, "vex256.66.0f38.58"}, {60, "vex128.w1.0f38.f2"},
        {62, "vex256.f3.0f.6f"}};
    if (auto it = kSimdNames.find(index); it != kSimdNames.end()) expected = it->second;
    CHECK(insn->name() == expected);
    // Truncated input asks for more bytes rather than guessing.
    auto truncated = DecodeInstruction64(std::span<const uint8_t>(bytes.data(), len - 1));
    CHECK(absl::IsOutOfRange(truncated.status()));
    p += len;
    ++index;
  }
  CHECK(index > std::size(kExpectedNames));
}

TEST_CASE("memory operands: SIB, RIP-relative, segment and address-size overrides") {
  RegisterState regs;
  for (int i = 0; i < 16; ++i) regs.gpr[i] = 0x1000ull * (i + 1);
  regs.rip = 0x400000;
  regs.segment_base[static_cast<int>(SegmentReg::kFs)] = 0x7000'0000'0000ull;
  regs.segment_base[static_cast<int>(SegmentReg::kGs)] = 0xffff'8880'0000'0000ull;

  // cmpxchg16b 0x12345678(%r13,%r12,8)
  const uint8_t sib[] = {0x4b, 0x0f, 0xc7, 0x8c, 0xe5, 0x78, 0x56, 0x34, 0x12};
  auto a = DecodeInstruction64(sib);
  REQUIRE(a.ok());
  CHECK(a->memory.base == 13);
  CHECK(a->memory.index == 12);
  CHECK(a->memory.scale == 8);
  CHECK(ComputeLinearAddress(regs, *a, 16).address == regs.gpr[13] + regs.gpr[12] * 8 + 0x12345678);

  // cmpxchg8b %fs:0x10(%rip)
  const uint8_t rip[] = {0x64, 0x0f, 0xc7, 0x0d, 0x10, 0x00, 0x00, 0x00};
  auto b = DecodeInstruction64(rip);
  REQUIRE(b.ok());
  CHECK(b->memory.rip_relative);
  CHECK(ComputeLinearAddress(regs, *b, 8).address == 0x7000'0000'0000ull + regs.rip + 8 + 0x10);

  // cmpxchg16b %gs:(%rbx)
  const uint8_t gs[] = {0x65, 0x48, 0x0f, 0xc7, 0x0b};
  auto c = DecodeInstruction64(gs);
  REQUIRE(c.ok());
  CHECK(ComputeLinearAddress(regs, *c, 16).address == 0xffff'8880'0000'0000ull + regs.gpr[3]);

  // addr32 cmpxchg16b (%eax) with RAX above 4 GiB: the effective address wraps to 32 bits.
  regs.gpr[0] = 0x1'0000'2000ull;
  const uint8_t a32[] = {0x67, 0x48, 0x0f, 0xc7, 0x08};
  auto d = DecodeInstruction64(a32);
  REQUIRE(d.ok());
  CHECK(ComputeLinearAddress(regs, *d, 16).address == 0x2000);

  // -8(%rsp) uses SS; a non-canonical stack address is #SS(0), not #GP.
  const uint8_t stack[] = {0xf0, 0x0f, 0xc7, 0x4c, 0x24, 0xf8};
  auto e = DecodeInstruction64(stack);
  REQUIRE(e.ok());
  CHECK(e->memory.segment == SegmentReg::kSs);
  regs.gpr[4] = 0x0000'9000'0000'0000ull;
  auto la = ComputeLinearAddress(regs, *e, 8);
  REQUIRE(la.fault.has_value());
  CHECK(la.fault->vector == kVectorStackFault);
}

TEST_CASE("decoder rejects over-long and XOP encodings, names unknown opcodes") {
  std::vector<uint8_t> longer(14, 0x66);
  longer.push_back(0x90);
  longer.push_back(0x90);
  CHECK(DecodeInstruction64(longer).ok());  // 14 prefixes + nop = 15 bytes: legal
  longer.insert(longer.begin(), 0x66);
  CHECK(absl::IsInvalidArgument(DecodeInstruction64(longer).status()));

  const uint8_t xop[] = {0x8f, 0xe9, 0x78, 0xe1, 0xc1};  // XOP vphaddbw: not decoded
  CHECK(absl::IsInvalidArgument(DecodeInstruction64(xop).status()));

  const uint8_t rdrand[] = {0x48, 0x0f, 0xc7, 0xf0};
  auto r = DecodeInstruction64(rdrand);
  REQUIRE(r.ok());
  CHECK(r->mnemonic == Mnemonic::kUnknown);
  CHECK(r->OpcodeText() == "rex.w 0f c7 f0");
  CHECK(r->BytesText() == "48 0f c7 f0");

  const uint8_t lock_ud2[] = {0xf0, 0x0f, 0x0b};
  auto u = DecodeInstruction64(lock_ud2);
  REQUIRE(u.ok());
  CHECK(u->lock);
  CHECK(u->mnemonic == Mnemonic::kUd2);
}

}  // namespace
}  // namespace coalesce
