// Runs the tiny long-mode guest of emul_guest.S under KVM and completes every emulation failure with
// CompleteFailedInstruction. On PVM those failures really happen (int3, lock cmpxchg16b, xrstor, ...); with
// hardware virtualization the guest runs natively and the same guest-visible results must come out.
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cpuid.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "hypervisor/emul/instruction_completer.h"
#include "tests/kvm_emul/long_mode_harness.h"

extern "C" const uint8_t emul_guest_start[], emul_guest_end[], emul_guest_isr_table[], emul_guest_after_int3[],
    emul_guest_ud2[], emul_guest_pf[], emul_guest_wp[];

namespace coalesce {
namespace {

// CPUID.(EAX=0Dh, ECX=1).EAX bits 0 (xsaveopt) and 1 (xsavec) of this CPU. QEMU's TCG, the CPU of the nested KVM
// host (docs/NESTED_KVM.md), has neither: the guest then leaves that round trip out.
uint64_t HostXsaveExtensions() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 0xd) return 0;
  __cpuid_count(0xd, 1, a, b, c, d);
  return a & 3;
}

using namespace kvm_test;  // NOLINT: the harness is this test's vocabulary

constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000, kPt = 0x4000, kGdt = 0x5000, kTss = 0x6000,
                   kIdt = 0x7000, kExcCount = 0x8000, kExcLog = 0x8008, kResults = 0x8400, kCas16A = 0x9000,
                   kCas16B = 0x9010, kCas8A = 0x9020, kCas8B = 0x9030, kXmmSrc = 0x9100, kXcr0Copy = 0x9200, kXsaveExt = 0x9208, kGuestCode = 0x10000,
                   kAbsentPage = 0x1f0000, kReadOnlyPage = 0x1f1000;

uint64_t GuestAddress(const uint8_t* symbol) { return kGuestCode + static_cast<uint64_t>(symbol - emul_guest_start); }

void BuildGuest(const GuestMemory& mem) {
  // Identity map: 4 KiB pages for the first 2 MiB (one absent, one read-only), a 2 MiB page above.
  Put<uint64_t>(mem, kPml4, kPdpt | 0x3);
  Put<uint64_t>(mem, kPdpt, kPd | 0x3);
  Put<uint64_t>(mem, kPd, kPt | 0x3);
  Put<uint64_t>(mem, kPd + 8, 0x200000 | 0x83);
  for (uint64_t page = 0; page < 512; ++page) {
    const uint64_t addr = page << 12;
    uint64_t pte = addr | 0x3;
    if (addr == kAbsentPage) pte = 0;
    if (addr == kReadOnlyPage) pte = addr | 0x1;
    Put<uint64_t>(mem, kPt + 8 * page, pte);
  }
  // GDT: null, 64-bit code (0x08), data (0x10), 64-bit TSS (0x18, two slots).
  Put<uint64_t>(mem, kGdt + 0x08, 0x00209a0000000000ull);
  Put<uint64_t>(mem, kGdt + 0x10, 0x00cf92000000ffffull);
  Put<uint64_t>(mem, kGdt + 0x18, 0x0000890000000067ull | ((kTss & 0xffffff) << 16));
  // IDT: 32 interrupt gates to the stubs.
  for (uint64_t v = 0; v < 32; ++v) {
    const uint64_t handler = GuestAddress(emul_guest_isr_table) + 16 * v;
    const uint64_t low = (handler & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((handler >> 16 & 0xffff) << 48);
    Put<uint64_t>(mem, kIdt + 16 * v, low);
    Put<uint64_t>(mem, kIdt + 16 * v + 8, handler >> 32);
  }
  REQUIRE(mem.Write(kGuestCode, {emul_guest_start, static_cast<size_t>(emul_guest_end - emul_guest_start)}).ok());
  // Inputs: cmpxchg16b A equals RDX:RAX (success), B does not; cmpxchg8b the same; XMM sources.
  Put<uint64_t>(mem, kCas16A, 0x1111222233334444ull);
  Put<uint64_t>(mem, kCas16A + 8, 0x5555666677778888ull);
  Put<uint64_t>(mem, kCas16B, 0x0123456789abcdefull);
  Put<uint64_t>(mem, kCas16B + 8, 0x5555666677778888ull);
  Put<uint64_t>(mem, kCas8A, 0x7777888833334444ull);
  Put<uint64_t>(mem, kCas8B, 0xfedcba9876543210ull);
  for (uint64_t i = 0; i < 6; ++i) Put<uint64_t>(mem, kXmmSrc + 8 * i, 0xa5a5'0000'0000'0000ull + i * 0x0101);
  Put<uint64_t>(mem, kReadOnlyPage + 0x20, 0x1111222233334444ull);
}

absl::Status EnterLongMode(VcpuFd& vcpu, const GuestMemory& mem) {
  auto sregs = vcpu.GetSregs();
  if (!sregs.ok()) return sregs.status();
  const kvm_sregs s = LongModeSregs(*sregs, {.cr3 = kPml4, .cr4 = 0x40620 /* + OSXSAVE */, .gdt = kGdt,
                                              .gdt_limit = 0x27, .idt = kIdt, .tss = kTss, .tss_selector = 0x18});
  if (auto st = vcpu.SetSregs(s); !st.ok()) return st;
  kvm_regs r{};
  r.rip = kGuestCode;
  r.rsp = 0x80000;
  r.rflags = 0x2;
  if (auto st = vcpu.SetRegs(r); !st.ok()) return st;
  // XCR0 = x87 | SSE (| AVX when offered). VcpuFd has no KVM_SET_XCRS wrapper yet.
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  kvm_xcrs xcrs{};
  xcrs.nr_xcrs = 1;
  xcrs.xcrs[0].xcr = 0;
  xcrs.xcrs[0].value = lo & 0x7;
  if (::ioctl(vcpu.fd(), KVM_SET_XCRS, &xcrs) < 0) return absl::InternalError("KVM_SET_XCRS failed");
  Put<uint64_t>(mem, kXcr0Copy, xcrs.xcrs[0].value);
  Put<uint64_t>(mem, kXsaveExt, HostXsaveExtensions());
  return absl::OkStatus();
}

TEST_CASE("a long-mode guest runs past every emulation failure with the guest-visible results of hardware") {
  if (!KvmUsable()) return;
  KvmRig rig = MakeRig();
  GuestMemory* mem = &*rig.mem;
  VcpuFd* vcpu = &*rig.vcpu;
  BuildGuest(*mem);
  auto entered = EnterLongMode(*vcpu, *mem);
  INFO(entered.ToString());
  REQUIRE(entered.ok());

  const GuestRun run = RunUntilHlt(*vcpu, *mem, 60, 10000);
  REQUIRE(run.halted);
  const std::map<std::string, int>& completed = run.completed;
  const uint64_t continued = run.continued;
  std::string summary;
  for (auto& [name, count] : completed) summary += name + " x" + std::to_string(count) + " ";
  WARN("instructions completed in user space: " << (summary.empty() ? "none (hardware virtualization?)" : summary)
                                                 << "; completed after them in the same exits: " << continued);

  CHECK(Get<uint64_t>(*mem, kResults + 0x70) == 0x600d);
  // popcnt / lzcnt / tzcnt / lock xadd.
  CHECK(Get<uint64_t>(*mem, kResults + 0x78) == 32);
  // KVM's instruction emulator (PVM batch) ignores F3 on 0f bd and computes bsr instead of lzcnt (16 here),
  // without an exit we could correct. Hardware, and our own completion, give 15.
  if (Get<uint32_t>(*mem, kResults + 0x80) == 16 && !completed.empty() && completed.count("lzcnt") == 0) {
    WARN("KVM's emulator ran lzcnt as bsr (known in-kernel emulator limitation)");
  } else {
    CHECK(Get<uint32_t>(*mem, kResults + 0x80) == 15);
  }
  CHECK(Get<uint32_t>(*mem, kResults + 0x84) == 16);
  CHECK(Get<uint64_t>(*mem, kResults + 0x88) == 15);
  CHECK(Get<uint64_t>(*mem, kResults + 0x90) == 10);
  // AVX run: xmm3 = pshufd(0x1b, (src + src) ^ src) per dword, eax = its dword 0 + 7.
  if (Get<uint64_t>(*mem, kXcr0Copy) & 4) {
    uint32_t src[4], want[4];
    for (int i = 0; i < 4; ++i) src[i] = Get<uint32_t>(*mem, kXmmSrc + 4 * i);
    for (int i = 0; i < 4; ++i) want[3 - i] = (src[i] + src[i]) ^ src[i];
    for (int i = 0; i < 4; ++i) CHECK(Get<uint32_t>(*mem, kResults + 0xa0 + 4 * i) == want[i]);
    CHECK(Get<uint32_t>(*mem, kResults + 0xb0) == want[0] + 7);
  } else {
    WARN("the host offers no AVX: the VEX part of the guest was skipped");
  }
  // cmpxchg16b: success stored RCX:RBX and set ZF; failure cleared ZF and loaded RDX:RAX.
  CHECK((Get<uint64_t>(*mem, kResults + 0x00) & 0x40) != 0);
  CHECK(Get<uint64_t>(*mem, kCas16A) == 0x9999aaaabbbbccccull);
  CHECK(Get<uint64_t>(*mem, kCas16A + 8) == 0xddddeeeeffff0000ull);
  CHECK((Get<uint64_t>(*mem, kResults + 0x08) & 0x40) == 0);
  CHECK(Get<uint64_t>(*mem, kResults + 0x10) == 0x0123456789abcdefull);
  CHECK(Get<uint64_t>(*mem, kResults + 0x18) == 0x5555666677778888ull);
  CHECK(Get<uint64_t>(*mem, kCas16B) == 0x0123456789abcdefull);
  // cmpxchg8b: the same, with the 32-bit loads zero-extended.
  CHECK((Get<uint64_t>(*mem, kResults + 0x20) & 0x40) != 0);
  CHECK(Get<uint64_t>(*mem, kCas8A) == 0xffff0000bbbbccccull);
  CHECK((Get<uint64_t>(*mem, kResults + 0x28) & 0x40) == 0);
  CHECK(Get<uint64_t>(*mem, kResults + 0x30) == 0x76543210ull);
  CHECK(Get<uint64_t>(*mem, kResults + 0x38) == 0xfedcba98ull);
  // XMM registers survived xsave/xrstor, fxsave/fxrstor and xsavec/compacted xrstor round trips.
  if ((HostXsaveExtensions() & 3) != 3) WARN("the CPU has no xsaveopt/xsavec (QEMU TCG?): that round trip was skipped");
  for (uint64_t i = 0; i < 6; ++i) {
    CHECK(Get<uint64_t>(*mem, kResults + 0x40 + 8 * i) == Get<uint64_t>(*mem, kXmmSrc + 8 * i));
  }
  // Exceptions, in order: #BP after int3, #UD at ud2, #PF (absent, W), #PF (read-only, P|W).
  REQUIRE(Get<uint64_t>(*mem, kExcCount) == 4);
  auto log = [&](int n, int field) { return Get<uint64_t>(*mem, kExcLog + 32 * n + 8 * field); };
  CHECK(log(0, 0) == 3);
  CHECK(log(0, 2) == GuestAddress(emul_guest_after_int3));
  CHECK(log(1, 0) == 6);
  CHECK(log(1, 2) == GuestAddress(emul_guest_ud2));
  CHECK(log(2, 0) == 14);
  CHECK(log(2, 1) == 0x2);
  CHECK(log(2, 2) == GuestAddress(emul_guest_pf));
  CHECK(log(2, 3) == kAbsentPage + 0x10);
  CHECK(log(3, 0) == 14);
  CHECK(log(3, 1) == 0x3);
  CHECK(log(3, 2) == GuestAddress(emul_guest_wp));
  CHECK(log(3, 3) == kReadOnlyPage + 0x20);
  CHECK(Get<uint64_t>(*mem, kReadOnlyPage + 0x20) == 0x1111222233334444ull);
}

}  // namespace
}  // namespace coalesce
