// VEX/EVEX decoding, the SIMD allowlist, and SIMD instructions run natively against a guest's vector state,
// checked against the same instructions run directly on the host CPU.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "hypervisor/emul/instruction_decoder.h"
#include "hypervisor/emul/instruction_executor.h"
#include "hypervisor/emul/simd_forms.h"
#include "tests/unit/emul/software_cpu.h"

namespace coalesce {
namespace {

constexpr uint64_t kBase = 0x7f00'0000'0000ull;
constexpr uint32_t kXmmOffset = 160;
constexpr uint32_t kYmmHighOffset = 576;  // component 2 in the standard format

uint64_t HostXcr0() {
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
bool HostHasAvx() { return (HostXcr0() & 0x6) == 0x6 && __builtin_cpu_supports("avx2"); }
bool HostHasAvx512() { return (HostXcr0() & 0xe6) == 0xe6 && __builtin_cpu_supports("avx512vl"); }

absl::StatusOr<ExecutionResult> Run(SoftwareCpu& cpu, std::vector<uint8_t> bytes) {
  auto insn = DecodeInstruction64(bytes);
  if (!insn.ok()) return insn.status();
  return ExecuteInstruction(cpu, *insn);
}

// A CPU with the host's vector state enabled (AVX-512 included where the host has it), MXCSR at its reset
// value, CR4.OSXSAVE/OSFXSR set, and XMMn = bytes n*16..n*16+15 of a pattern.
SoftwareCpu MakeCpu() {
  SoftwareCpu cpu(kBase, 0x2000);
  cpu.extended.xcr0 = HostXcr0() & 0xe7;
  cpu.extended.image.assign(cpu.layout.StandardSize(cpu.extended.xcr0), 0);
  const uint32_t mxcsr = 0x1f80;
  std::memcpy(cpu.extended.image.data() + 24, &mxcsr, 4);
  cpu.extended.image[512] = 0x3;  // XSTATE_BV: x87 + SSE in use
  for (int i = 0; i < 16 * 16; ++i) cpu.extended.image[kXmmOffset + i] = static_cast<uint8_t>(i * 7 + 1);
  cpu.regs.cr4 |= kCr4Osxsave | kCr4Osfxsr;
  return cpu;
}

const uint8_t* Xmm(SoftwareCpu& cpu, int n) { return cpu.extended.image.data() + kXmmOffset + 16 * n; }

struct Decoded {
  std::vector<uint8_t> bytes;
  uint8_t length;
  Encoding encoding;
  OpcodeMap map;
  uint8_t opcode;
  uint8_t vector_bytes;
};

TEST_CASE("VEX and EVEX instructions decode to their length, map and vector length") {
  const std::vector<Decoded> cases = {
      {{0xc5, 0xfa, 0x6f, 0x07}, 4, Encoding::kVex, OpcodeMap::k0F, 0x6f, 16},                 // vmovdqu (%rdi),%xmm0
      {{0xc5, 0x79, 0x6f, 0x35, 0x36, 0x8b, 0x25, 0x01}, 8, Encoding::kVex, OpcodeMap::k0F, 0x6f, 16},  // rip-rel
      {{0xc5, 0xfe, 0x6f, 0x7e, 0x20}, 5, Encoding::kVex, OpcodeMap::k0F, 0x6f, 32},           // vmovdqu 0x20(%rsi),%ymm7
      {{0x62, 0x72, 0x4d, 0x28, 0x76, 0xc7}, 6, Encoding::kEvex, OpcodeMap::k0F38, 0x76, 32},  // vpermi2d
      {{0x62, 0xf1, 0x65, 0x08, 0x72, 0xc3, 0x10}, 7, Encoding::kEvex, OpcodeMap::k0F, 0x72, 16},  // vprord $16
      {{0xc4, 0x43, 0x7d, 0x39, 0xc0, 0x01}, 6, Encoding::kVex, OpcodeMap::k0F3A, 0x39, 32},   // vextracti128
      {{0xc5, 0xf8, 0x77}, 3, Encoding::kVex, OpcodeMap::k0F, 0x77, 16},                       // vzeroupper
      {{0xc4, 0xc1, 0x79, 0xfe, 0xc0}, 5, Encoding::kVex, OpcodeMap::k0F, 0xfe, 16},           // vpaddd %xmm8,...
      {{0x62, 0xf1, 0x7d, 0x48, 0xfe, 0x44, 0x24, 0x02}, 8, Encoding::kEvex, OpcodeMap::k0F, 0xfe, 64},  // disp8*N
      {{0x66, 0x0f, 0x38, 0x00, 0xc1}, 5, Encoding::kLegacy, OpcodeMap::k0F38, 0x00, 16},      // pshufb
  };
  for (const auto& c : cases) {
    auto in = DecodeInstruction64(c.bytes);
    INFO((in.ok() ? in->BytesText() : std::string(in.status().message())));
    REQUIRE(in.ok());
    CHECK(in->length == c.length);
    CHECK(in->encoding == c.encoding);
    CHECK(in->map == c.map);
    CHECK(in->opcode == c.opcode);
    if (c.encoding != Encoding::kLegacy) CHECK(in->vector_bytes == c.vector_bytes);
    CHECK(in->mnemonic == Mnemonic::kSimd);
  }
  auto rip = DecodeInstruction64(std::vector<uint8_t>{0xc5, 0x79, 0x6f, 0x35, 0x36, 0x8b, 0x25, 0x01});
  CHECK(rip->memory.rip_relative);
  CHECK(rip->memory.displacement == 0x1258b36);
  CHECK(rip->name() == "vex128.66.0f.6f");
  auto r8 = DecodeInstruction64(std::vector<uint8_t>{0xc4, 0xc1, 0x7a, 0x6f, 0x00});  // vmovdqu (%r8),%xmm0
  CHECK(r8->memory.base == 8);
  CHECK(absl::IsInvalidArgument(DecodeInstruction64(std::vector<uint8_t>{0x66, 0xc5, 0xf8, 0x77}).status()));
}

TEST_CASE("The SIMD allowlist sizes memory operands and refuses what touches other memory") {
  auto form = [](std::vector<uint8_t> b) { return ClassifySimd(*DecodeInstruction64(b)); };
  CHECK(form({0xc5, 0xfa, 0x6f, 0x07})->memory_bytes == 16);
  CHECK_FALSE(form({0xc5, 0xfa, 0x6f, 0x07})->aligned);
  CHECK(form({0xc5, 0xfd, 0x6f, 0x07})->aligned);  // vmovdqa (%rdi),%ymm0
  CHECK(form({0xc5, 0xfd, 0x6f, 0x07})->memory_bytes == 32);
  auto extract = form({0xc4, 0x63, 0x7d, 0x39, 0x07, 0x01});  // vextracti128 $1,%ymm8,(%rdi)
  CHECK(extract->store);
  CHECK(extract->memory_bytes == 16);
  CHECK(form({0xc5, 0xf9, 0x7e, 0x07})->memory_bytes == 4);             // vmovd %xmm0,(%rdi)
  CHECK(form({0xc4, 0xe2, 0x7d, 0x58, 0x07})->memory_bytes == 4);       // vpbroadcastd (%rdi),%ymm0
  CHECK(form({0x66, 0x0f, 0xfe, 0x07})->aligned);                       // paddd (%rdi): legacy SSE aligns
  CHECK(form({0xc4, 0xe2, 0x7d, 0x90, 0x04, 0x8f}) == std::nullopt);    // vpgatherdd: VSIB
  CHECK(form({0xc4, 0xe2, 0x79, 0x8c, 0x07}) == std::nullopt);          // vpmaskmovd
  CHECK(form({0x66, 0x0f, 0xf7, 0xc1}) == std::nullopt);                // maskmovdqu: implicit [rdi]
  CHECK(form({0x66, 0x0f, 0x38, 0x82, 0x07}) == std::nullopt);          // invpcid
}

TEST_CASE("The blake2s AVX rounds run natively and match the host CPU") {
  if (!HostHasAvx()) return;  // nothing to compare with: the guest could not see AVX either
  alignas(32) uint8_t mem[64];
  for (int i = 0; i < 64; ++i) mem[i] = static_cast<uint8_t>(0x5a ^ (i * 13));
  SoftwareCpu cpu = MakeCpu();
  std::memcpy(cpu.At(kBase), mem, 64);
  cpu.regs.gpr[7] = kBase;  // rdi
  cpu.regs.gpr[1] = 0x1234;  // ecx
  alignas(16) uint8_t xmm[4][16];
  for (int n = 0; n < 4; ++n) std::memcpy(xmm[n], Xmm(cpu, n), 16);
  const std::vector<std::vector<uint8_t>> seq = {
      {0xc5, 0xfa, 0x6f, 0x07},        // vmovdqu (%rdi),%xmm0
      {0xc5, 0xfa, 0x6f, 0x4f, 0x10},  // vmovdqu 0x10(%rdi),%xmm1
      {0xc5, 0xf9, 0x6e, 0xe9},        // vmovd %ecx,%xmm5
      {0xc5, 0xd9, 0xd4, 0xe5},        // vpaddq %xmm5,%xmm4,%xmm4
      {0xc5, 0xf9, 0xfe, 0xc1},        // vpaddd %xmm1,%xmm0,%xmm0
      {0xc5, 0xe1, 0xef, 0xd8},        // vpxor %xmm0,%xmm3,%xmm3
      {0xc5, 0xf9, 0x70, 0xc0, 0x93},  // vpshufd $0x93,%xmm0,%xmm0
      {0xc5, 0xfa, 0x7f, 0x47, 0x20},  // vmovdqu %xmm0,0x20(%rdi)
      {0xc5, 0xf9, 0x7e, 0xd8},        // vmovd %xmm3,%eax
  };
  for (const auto& b : seq) {
    auto r = Run(cpu, b);
    INFO((r.ok() ? r->mnemonic : std::string(r.status().message())));
    REQUIRE(r.ok());
  }
  CHECK(cpu.injected.empty());
  alignas(16) uint8_t host3[16], host4[16];
  uint32_t host_eax = 0;
  asm volatile(
      "vmovdqu (%[x3]), %%xmm3\n\tvmovdqu (%[x4]), %%xmm4\n\t"
      "vmovdqu (%[m]), %%xmm0\n\tvmovdqu 0x10(%[m]), %%xmm1\n\tvmovd %[c], %%xmm5\n\t"
      "vpaddq %%xmm5, %%xmm4, %%xmm4\n\tvpaddd %%xmm1, %%xmm0, %%xmm0\n\tvpxor %%xmm0, %%xmm3, %%xmm3\n\t"
      "vpshufd $0x93, %%xmm0, %%xmm0\n\tvmovdqu %%xmm0, 0x20(%[m])\n\tvmovd %%xmm3, %[eax]\n\t"
      "vmovdqu %%xmm3, (%[h3])\n\tvmovdqu %%xmm4, (%[h4])"
      : [eax] "=r"(host_eax)
      : [x3] "r"(xmm[3]), [x4] "r"(Xmm(cpu, 4) /* unchanged input copy below */), [m] "r"(mem), [c] "r"(0x1234u),
        [h3] "r"(host3), [h4] "r"(host4)
      : "xmm0", "xmm1", "xmm3", "xmm4", "xmm5", "memory");
  (void)host4;
  CHECK(std::memcmp(cpu.At(kBase + 0x20), mem + 0x20, 16) == 0);
  CHECK(std::memcmp(Xmm(cpu, 3), host3, 16) == 0);
  CHECK(cpu.regs.gpr[0] == host_eax);
  CHECK(cpu.regs.rip == 4 + 5 + 4 + 4 + 4 + 4 + 5 + 5 + 4);
  CHECK((cpu.extended.image[512] & 0x2) != 0);
}

TEST_CASE("AVX-512 vprord and vpermi2d match the host CPU") {
  if (!HostHasAvx512()) return;
  SoftwareCpu cpu = MakeCpu();
  alignas(16) uint8_t in[4][16], out3[16], out8[16];
  for (int n = 0; n < 4; ++n) std::memcpy(in[n], Xmm(cpu, n), 16);
  REQUIRE(Run(cpu, {0x62, 0xf1, 0x65, 0x08, 0x72, 0xc3, 0x10}).ok());  // vprord $16,%xmm3,%xmm3
  REQUIRE(Run(cpu, {0xc5, 0x79, 0x6f, 0xc2}).ok());                    // vmovdqa %xmm2,%xmm8
  REQUIRE(Run(cpu, {0x62, 0x72, 0x75, 0x08, 0x76, 0xc0}).ok());        // vpermi2d %xmm0,%xmm1,%xmm8
  CHECK(cpu.injected.empty());
  asm volatile(
      "vmovdqu (%[a]), %%xmm3\n\tvprord $16, %%xmm3, %%xmm3\n\tvmovdqu %%xmm3, (%[o3])\n\t"
      "vmovdqu (%[c]), %%xmm8\n\tvmovdqu (%[z]), %%xmm0\n\tvmovdqu (%[o]), %%xmm1\n\t"
      "vpermi2d %%xmm0, %%xmm1, %%xmm8\n\tvmovdqu %%xmm8, (%[o8])"
      :
      : [a] "r"(in[3]), [c] "r"(in[2]), [z] "r"(in[0]), [o] "r"(in[1]), [o3] "r"(out3), [o8] "r"(out8)
      : "xmm0", "xmm1", "xmm3", "xmm8", "memory");
  CHECK(std::memcmp(Xmm(cpu, 3), out3, 16) == 0);
  CHECK(std::memcmp(Xmm(cpu, 8), out8, 16) == 0);
}

TEST_CASE("SIMD faults: alignment, read-only pages, invalid encodings, disabled AVX, CR0.TS") {
  if (!HostHasAvx()) return;
  {
    SoftwareCpu cpu = MakeCpu();
    cpu.regs.gpr[7] = kBase + 8;
    REQUIRE(Run(cpu, {0xc5, 0xfd, 0x6f, 0x07}).ok());  // vmovdqa (%rdi),%ymm0, misaligned
    REQUIRE(cpu.injected.size() == 1);
    CHECK(cpu.injected[0] == Fault::GeneralProtection(0));
    CHECK(cpu.regs.rip == 0);
  }
  {
    SoftwareCpu cpu = MakeCpu();
    cpu.SetPage(kBase + 0x1000, true, false);
    cpu.regs.gpr[7] = kBase + 0x1000;
    REQUIRE(Run(cpu, {0xc5, 0xfa, 0x7f, 0x07}).ok());  // vmovdqu %xmm0,(%rdi) into a read-only page
    REQUIRE(cpu.injected.size() == 1);
    CHECK(cpu.injected[0].vector == kVectorPageFault);
    CHECK((*cpu.injected[0].error_code & 0x2) != 0);  // W
    CHECK(cpu.At(kBase + 0x1000)[0] == 0);
  }
  {
    SoftwareCpu cpu = MakeCpu();
    REQUIRE(Run(cpu, {0xc5, 0xfd, 0x7e, 0xc0}).ok());  // vmovd with VEX.L=1: #UD on the host, caught
    REQUIRE(cpu.injected.size() == 1);
    CHECK(cpu.injected[0] == Fault::InvalidOpcode());
    CHECK(cpu.regs.rip == 0);
  }
  {
    SoftwareCpu cpu = MakeCpu();
    cpu.extended.xcr0 = 0x3;  // the guest never enabled AVX
    REQUIRE(Run(cpu, {0xc5, 0xf9, 0xfe, 0xc1}).ok());
    CHECK(cpu.injected.back() == Fault::InvalidOpcode());
    cpu = MakeCpu();
    cpu.regs.cr0 |= kCr0Ts;
    REQUIRE(Run(cpu, {0xc5, 0xf9, 0xfe, 0xc1}).ok());
    CHECK(cpu.injected.back() == Fault::DeviceNotAvailable());
  }
}

TEST_CASE("ptest and ucomiss give the guest the host's flags") {
  SoftwareCpu cpu = MakeCpu();
  std::memset(cpu.extended.image.data() + kXmmOffset + 16, 0, 16);  // xmm1 = 0
  REQUIRE(Run(cpu, {0x66, 0x0f, 0x38, 0x17, 0xc1}).ok());          // ptest %xmm1,%xmm0: ZF = 1
  CHECK((cpu.regs.rflags & 0x40) != 0);
  REQUIRE(Run(cpu, {0x66, 0x0f, 0x38, 0x17, 0xc0}).ok());          // ptest %xmm0,%xmm0: ZF = 0
  CHECK((cpu.regs.rflags & 0x40) == 0);
}

}  // namespace
}  // namespace coalesce
