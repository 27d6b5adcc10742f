// The FXSAVE/XSAVE family on SoftwareCpu against the host CPU. Each host run loads a prepared state with
// xrstor64, captures it as the emulator's state image (xsave64, all components), executes the instruction
// under test, and restores the host's own state, all in one asm block so no compiler code runs in between.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <vector>

#include "hypervisor/emul/instruction_decoder.h"
#include "hypervisor/emul/instruction_executor.h"
#include "tests/unit/emul/software_cpu.h"

namespace coalesce {
namespace {

constexpr uint64_t kBase = 0x7f00'0000'0000ull;
constexpr size_t kArea = 8192;
constexpr uint8_t kFill = 0xa5;

struct alignas(64) Area {
  uint8_t bytes[kArea];
};

uint64_t HostXcr0() {
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

#define HOST_SAVE(fn, insn)                                                                                \
  void fn(const uint8_t* prepared, uint8_t* image, uint8_t* dst, uint64_t mask) {                          \
    alignas(64) static uint8_t host[kArea];                                                                \
    asm volatile(                                                                                          \
        "mov $-1, %%eax\n\tmov $-1, %%edx\n\txsave64 (%[hs])\n\txrstor64 (%[prep])\n\txsave64 (%[img])\n\t" \
        "mov %k[lo], %%eax\n\tmov %k[hi], %%edx\n\t" insn " (%[dst])\n\t"                                  \
        "mov $-1, %%eax\n\tmov $-1, %%edx\n\txrstor64 (%[hs])"                                             \
        :                                                                                                  \
        : [hs] "r"(host), [prep] "r"(prepared), [img] "r"(image), [dst] "r"(dst),                          \
          [lo] "r"(static_cast<uint32_t>(mask)), [hi] "r"(static_cast<uint32_t>(mask >> 32))               \
        : "rax", "rdx", "memory");                                                                         \
  }

#define HOST_RESTORE(fn, insn)                                                                              \
  void fn(const uint8_t* prepared, uint8_t* before, const uint8_t* src, uint8_t* after, uint64_t mask) {   \
    alignas(64) static uint8_t host[kArea];                                                                 \
    asm volatile(                                                                                           \
        "mov $-1, %%eax\n\tmov $-1, %%edx\n\txsave64 (%[hs])\n\txrstor64 (%[prep])\n\txsave64 (%[bef])\n\t" \
        "mov %k[lo], %%eax\n\tmov %k[hi], %%edx\n\t" insn " (%[src])\n\t"                                   \
        "mov $-1, %%eax\n\tmov $-1, %%edx\n\txsave64 (%[aft])\n\txrstor64 (%[hs])"                          \
        :                                                                                                   \
        : [hs] "r"(host), [prep] "r"(prepared), [bef] "r"(before), [src] "r"(src), [aft] "r"(after),        \
          [lo] "r"(static_cast<uint32_t>(mask)), [hi] "r"(static_cast<uint32_t>(mask >> 32))                \
        : "rax", "rdx", "memory");                                                                          \
  }

HOST_SAVE(HostXsave, "xsave")
HOST_SAVE(HostXsave64, "xsave64")
HOST_SAVE(HostXsaveopt64, "xsaveopt64")
HOST_SAVE(HostXsavec64, "xsavec64")
HOST_SAVE(HostFxsave, "fxsave")
HOST_SAVE(HostFxsave64, "fxsave64")
HOST_RESTORE(HostXrstor, "xrstor")
HOST_RESTORE(HostXrstor64, "xrstor64")
HOST_RESTORE(HostFxrstor, "fxrstor")
HOST_RESTORE(HostFxrstor64, "fxrstor64")

void Put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint64_t Get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// A valid standard-format image: random registers everywhere, sane x87 control words and MXCSR.
void FillImage(uint8_t* img, const XsaveLayout& layout, uint64_t xcr0, uint64_t xstate_bv, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::memset(img, 0, kArea);
  for (size_t i = 0; i < layout.StandardSize(xcr0); i += 8) Put64(img + i, rng());
  std::memset(img + 416, 0, 96);  // legacy bytes the processor never touches
  std::memset(img + 512, 0, 64);  // header
  img[0] = 0x7f;                   // FCW: all exceptions masked
  img[1] = 0x03;
  img[2] = (seed & 1) ? 0x81 : 0x00;  // FSW: half the cases with a (masked) pending exception, ES = 1
  img[3] = 0x38;  // TOP = 7
  img[4] = 0xff;  // abridged FTW: all valid
  img[5] = 0;
  img[6] = 0x23;  // FOP (11 bits)
  img[7] = 0x01;
  Put64(img + 8, 0x0000'1234'5678'9abcull);   // FIP
  Put64(img + 16, 0x0000'7654'3210'fedcull);  // FDP
  const uint32_t mxcsr = 0x1fa0, mask = layout.mxcsr_mask;
  std::memcpy(img + 24, &mxcsr, 4);
  std::memcpy(img + 28, &mask, 4);
  for (int r = 0; r < 8; ++r) std::memset(img + 32 + 16 * r + 10, 0, 6);  // ST reserved bytes
  Put64(img + 512, xstate_bv & xcr0);
}

std::vector<uint8_t> ImageVector(const uint8_t* img, const XsaveLayout& layout, uint64_t xcr0) {
  return std::vector<uint8_t>(img, img + layout.StandardSize(xcr0));
}

// The architectural state an image describes: components whose XSTATE_BV bit is 0 read as their init values.
std::vector<uint8_t> Effective(const uint8_t* img, const XsaveLayout& layout, uint64_t xcr0) {
  std::vector<uint8_t> out(img, img + layout.StandardSize(xcr0));
  const uint64_t bv = Get64(img + 512);
  if (!(bv & 1)) {
    std::memset(out.data(), 0, 24);
    out[0] = 0x7f;
    out[1] = 0x03;
    std::memset(out.data() + 32, 0, 128);
  }
  if (!(bv & 2)) std::memset(out.data() + 160, 0, 256);
  std::memset(out.data() + 416, 0, 160);  // unused legacy bytes and the header
  for (int i = 2; i < 63; ++i) {
    const XsaveComponent& c = layout.components[i];
    if ((xcr0 >> i & 1) && !(bv >> i & 1)) std::memset(out.data() + c.standard_offset, 0, c.size);
  }
  return out;
}

// Converts a standard-format image into the compacted format for XCOMP_BV = xcomp | bit 63.
void Compact(const uint8_t* standard, uint8_t* compacted, const XsaveLayout& layout, uint64_t xcomp) {
  std::memset(compacted, kFill, kArea);
  std::memcpy(compacted, standard, 512);
  std::memset(compacted + 512, 0, 64);
  Put64(compacted + 512, Get64(standard + 512) & xcomp);
  Put64(compacted + 520, xcomp | kXcompBvCompacted);
  for (int i = 2; i < 63; ++i) {
    if (!(xcomp >> i & 1)) continue;
    const XsaveComponent& c = layout.components[i];
    std::memcpy(compacted + layout.CompactedOffset(xcomp, i), standard + c.standard_offset, c.size);
  }
}

// Runs the instruction `bytes` (addressing (%rdi)) on a SoftwareCpu whose state is `image` and whose memory
// at kBase holds `area`; returns the CPU for inspection.
std::unique_ptr<SoftwareCpu> Emulate(const std::vector<uint8_t>& bytes, const uint8_t* image, const uint8_t* area,
                                     uint64_t mask) {
  auto cpu = std::make_unique<SoftwareCpu>(kBase, kArea);
  cpu->extended.xcr0 = HostXcr0();
  cpu->extended.image = ImageVector(image, cpu->layout, cpu->extended.xcr0);
  std::memcpy(cpu->At(kBase), area, kArea);
  cpu->regs.gpr[7] = kBase;
  cpu->regs.gpr[0] = mask & 0xffffffff;
  cpu->regs.gpr[2] = mask >> 32;
  auto insn = DecodeInstruction64(bytes);
  REQUIRE(insn.ok());
  auto result = ExecuteInstruction(*cpu, *insn);
  REQUIRE(result.ok());
  CHECK(!result->injected.has_value());
  return cpu;
}

void CheckSameBytes(const uint8_t* want, const uint8_t* got, size_t n) {
  size_t mismatches = 0;
  for (size_t i = 0; i < n; ++i) {
    if (want[i] != got[i] && mismatches++ < 8) {
      UNSCOPED_INFO("offset " << i << ": host " << int(want[i]) << " emulated " << int(got[i]));
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("xsave, xsaveopt, xsavec and fxsave store what the host CPU stores") {
  const XsaveLayout layout = XsaveLayout::FromHostCpuid();
  if (!layout.has_xsave) {
    WARN("host has no XSAVE: nothing to compare against");
    return;
  }
  const uint64_t xcr0 = HostXcr0();
  struct Op {
    const char* name;
    void (*host)(const uint8_t*, uint8_t*, uint8_t*, uint64_t);
    std::vector<uint8_t> bytes;
    bool available;
  };
  const std::vector<Op> ops = {
      {"xsave", HostXsave, {0x0f, 0xae, 0x27}, true},
      {"xsave64", HostXsave64, {0x48, 0x0f, 0xae, 0x27}, true},
      {"xsaveopt64", HostXsaveopt64, {0x48, 0x0f, 0xae, 0x37}, layout.has_xsaveopt},
      {"xsavec64", HostXsavec64, {0x48, 0x0f, 0xc7, 0x27}, layout.has_xsavec},
      {"fxsave", HostFxsave, {0x0f, 0xae, 0x07}, true},
      {"fxsave64", HostFxsave64, {0x48, 0x0f, 0xae, 0x07}, true},
  };
  const uint64_t masks[] = {~0ull, 0x1, 0x2, 0x4, 0x3, 0xe0, 0x0, 0x7};
  const uint64_t in_use[] = {xcr0, 0x3, 0x0, 0xa4, 0x1, 0x2};
  static Area prepared, image, host_out, area;
  for (const Op& op : ops) {
    if (!op.available) continue;
    for (uint64_t bv : in_use) {
      for (uint64_t mask : masks) {
        INFO(op.name << " xstate_bv=" << std::hex << bv << " mask=" << mask);
        FillImage(prepared.bytes, layout, xcr0, bv, static_cast<uint32_t>(bv * 131 + mask));
        std::memset(image.bytes, 0, kArea);
        std::memset(host_out.bytes, kFill, kArea);
        op.host(prepared.bytes, image.bytes, host_out.bytes, mask);
        std::memset(area.bytes, kFill, kArea);
        auto cpu = Emulate(op.bytes, image.bytes, area.bytes, mask);
        CheckSameBytes(host_out.bytes, cpu->At(kBase), kArea);
      }
    }
  }
}

TEST_CASE("xrstor (standard and compacted) and fxrstor load what the host CPU loads") {
  const XsaveLayout layout = XsaveLayout::FromHostCpuid();
  if (!layout.has_xsave) {
    WARN("host has no XSAVE: nothing to compare against");
    return;
  }
  const uint64_t xcr0 = HostXcr0();
  struct Op {
    const char* name;
    void (*host)(const uint8_t*, uint8_t*, const uint8_t*, uint8_t*, uint64_t);
    std::vector<uint8_t> bytes;
    bool compacted;
  };
  std::vector<Op> ops = {
      {"xrstor", HostXrstor, {0x0f, 0xae, 0x2f}, false},
      {"xrstor64", HostXrstor64, {0x48, 0x0f, 0xae, 0x2f}, false},
      {"fxrstor", HostFxrstor, {0x0f, 0xae, 0x0f}, false},
      {"fxrstor64", HostFxrstor64, {0x48, 0x0f, 0xae, 0x0f}, false},
  };
  if (layout.has_xsavec) ops.push_back({"xrstor64 compacted", HostXrstor64, {0x48, 0x0f, 0xae, 0x2f}, true});
  const uint64_t masks[] = {~0ull, 0x1, 0x2, 0x4, 0x3, 0xe0, 0x0};
  const uint64_t source_bv[] = {xcr0, 0x3, 0x0, 0xa4, 0x2};
  static Area prepared, before, source, standard, after;
  for (const Op& op : ops) {
    for (uint64_t bv : source_bv) {
      for (uint64_t mask : masks) {
        for (uint64_t xcomp : {xcr0, xcr0 & 0x7}) {
          if (!op.compacted && xcomp != xcr0) continue;
          INFO(op.name << " source xstate_bv=" << std::hex << bv << " mask=" << mask << " xcomp=" << xcomp);
          FillImage(prepared.bytes, layout, xcr0, xcr0, static_cast<uint32_t>(mask + 7));
          FillImage(standard.bytes, layout, xcr0, bv, static_cast<uint32_t>(bv * 17 + mask + 1));
          if (op.compacted) {
            Compact(standard.bytes, source.bytes, layout, xcomp);
          } else {
            std::memcpy(source.bytes, standard.bytes, kArea);
          }
          std::memset(before.bytes, 0, kArea);
          std::memset(after.bytes, 0, kArea);
          op.host(prepared.bytes, before.bytes, source.bytes, after.bytes, mask);
          auto cpu = Emulate(op.bytes, before.bytes, source.bytes, mask);
          CHECK(cpu->state_writes == 1);
          const auto want = Effective(after.bytes, layout, xcr0);
          const auto got = Effective(cpu->extended.image.data(), layout, xcr0);
          REQUIRE(want.size() == got.size());
          CheckSameBytes(want.data(), got.data(), want.size());
        }
      }
    }
  }
}

TEST_CASE("xsave-family faults follow the SDM") {
  const XsaveLayout layout = XsaveLayout::FromHostCpuid();
  if (!layout.has_xsave) return;
  auto run = [](SoftwareCpu& cpu, std::vector<uint8_t> bytes) {
    auto insn = DecodeInstruction64(bytes);
    REQUIRE(insn.ok());
    auto r = ExecuteInstruction(cpu, *insn);
    REQUIRE(r.ok());
    return r->injected;
  };
  auto make = [&]() {
    auto cpu = std::make_unique<SoftwareCpu>(kBase, kArea);
    cpu->extended.xcr0 = HostXcr0();
    cpu->extended.image.assign(layout.StandardSize(cpu->extended.xcr0), 0);
    cpu->regs.gpr[7] = kBase;
    cpu->regs.gpr[0] = ~0u;
    cpu->regs.gpr[2] = ~0u;
    return cpu;
  };
  const std::vector<uint8_t> xsave64 = {0x48, 0x0f, 0xae, 0x27}, xrstor64 = {0x48, 0x0f, 0xae, 0x2f};
  const std::vector<uint8_t> xrstors64 = {0x48, 0x0f, 0xc7, 0x1f}, fxsave = {0x0f, 0xae, 0x07};

  auto cpu = make();
  cpu->regs.gpr[7] = kBase + 0x20;
  CHECK(run(*cpu, xsave64) == Fault::GeneralProtection(0));  // not 64-byte aligned
  CHECK(!run(*cpu, fxsave).has_value());                      // 16-byte alignment is enough for fxsave

  cpu = make();
  cpu->regs.cr4 &= ~kCr4Osxsave;
  CHECK(run(*cpu, xsave64) == Fault::InvalidOpcode());
  cpu = make();
  cpu->regs.cr0 |= kCr0Ts;
  CHECK(run(*cpu, xrstor64) == Fault::DeviceNotAvailable());
  CHECK(run(*cpu, fxsave) == Fault::DeviceNotAvailable());

  // Standard-form header with XCOMP_BV != 0, or XSTATE_BV outside XCR0: #GP, state untouched.
  cpu = make();
  Put64(cpu->At(kBase + 520), 1);
  CHECK(run(*cpu, xrstor64) == Fault::GeneralProtection(0));
  Put64(cpu->At(kBase + 520), 0);
  Put64(cpu->At(kBase + 512), 1ull << 62);
  CHECK(run(*cpu, xrstor64) == Fault::GeneralProtection(0));
  CHECK(cpu->state_writes == 0);

  // Reserved MXCSR bits: #GP.
  cpu = make();
  const uint32_t bad_mxcsr = 0xffff'ffff;
  std::memcpy(cpu->At(kBase + 24), &bad_mxcsr, 4);
  CHECK(run(*cpu, xrstor64) == Fault::GeneralProtection(0));

  // xrstors needs CPL 0 and the compacted form.
  if (layout.has_xsaves) {
    cpu = make();
    cpu->regs.cpl = 3;
    CHECK(run(*cpu, xrstors64) == Fault::GeneralProtection(0));
    cpu->regs.cpl = 0;
    CHECK(run(*cpu, xrstors64) == Fault::GeneralProtection(0));  // header says standard form
  }

  // A save area on an absent page: #PF with the write bit, nothing written.
  cpu = make();
  cpu->SetPage(kBase + 0x1000, false, true);
  cpu->regs.gpr[7] = kBase + 0xc00;
  std::memset(cpu->At(kBase), kFill, kArea);
  auto f = run(*cpu, xsave64);
  REQUIRE(f.has_value());
  CHECK(f->vector == kVectorPageFault);
  CHECK(f->cr2 == kBase + 0x1000);
  CHECK(f->error_code == kPfWrite);
  CHECK(cpu->At(kBase + 0xc00)[0] == kFill);
}

TEST_CASE("xsaves/xrstors round trip the user components through the compacted format") {
  const XsaveLayout layout = XsaveLayout::FromHostCpuid();
  if (!layout.has_xsaves) return;
  const uint64_t xcr0 = HostXcr0();
  static Area image;
  FillImage(image.bytes, layout, xcr0, xcr0 & ~0x2ull, 98);
  const uint32_t default_mxcsr = kMxcsrDefault;
  std::memcpy(image.bytes + 24, &default_mxcsr, 4);  // SSE state truly in its initial configuration
  std::memset(image.bytes + 6, 0, 18);                // no x87 error pointers (AMD drops them when ES = 0)
  SoftwareCpu cpu(kBase, kArea);
  cpu.extended.xcr0 = xcr0;
  cpu.extended.image = ImageVector(image.bytes, layout, xcr0);
  cpu.regs.gpr[7] = kBase;
  cpu.regs.gpr[0] = ~0u;
  cpu.regs.gpr[2] = ~0u;
  auto save = DecodeInstruction64(std::vector<uint8_t>{0x48, 0x0f, 0xc7, 0x2f});  // xsaves64 (%rdi)
  auto load = DecodeInstruction64(std::vector<uint8_t>{0x48, 0x0f, 0xc7, 0x1f});  // xrstors64 (%rdi)
  REQUIRE(save.ok());
  REQUIRE(load.ok());
  REQUIRE(ExecuteInstruction(cpu, *save).ok());
  CHECK(Get64(cpu.At(kBase + 520)) == (xcr0 | kXcompBvCompacted));
  CHECK(Get64(cpu.At(kBase + 512)) == (xcr0 & ~0x2ull));
  const auto want = Effective(image.bytes, layout, xcr0);
  cpu.extended.image.assign(cpu.extended.image.size(), 0x5a);
  REQUIRE(ExecuteInstruction(cpu, *load).ok());
  CHECK(cpu.injected.empty());
  const auto got = Effective(cpu.extended.image.data(), layout, xcr0);
  // SSE state was not in use: XMM registers come back zero and MXCSR as its default.
  auto expected = want;
  const uint32_t mxcsr_default = kMxcsrDefault;
  std::memcpy(expected.data() + 24, &mxcsr_default, 4);
  std::memcpy(expected.data() + 28, got.data() + 28, 4);  // MXCSR_MASK is not architectural state
  CheckSameBytes(expected.data(), got.data(), expected.size());
}

}  // namespace
}  // namespace coalesce
