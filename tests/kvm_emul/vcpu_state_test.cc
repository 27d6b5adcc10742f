// A vCPU stopped mid-computation, its state captured (hypervisor/vcpu/vcpu_state.h), encoded, decoded and
// restored into a vCPU of another VM that has a copy of the guest's memory, finishes with exactly the result of
// a run that never moved: registers, stack, SSE state and MSRs all travelled. The reference is the same guest
// run straight through on a third VM.
#include <catch2/catch.hpp>
#include <cstring>

#include "hypervisor/vcpu/vcpu_state.h"
#include "tests/kvm_emul/long_mode_harness.h"

extern "C" const uint8_t vs_start[], vs_end[];

namespace coalesce {
namespace {

using namespace kvm_test;  // NOLINT: the harness is this test's vocabulary

constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000, kGdt = 0x5000, kTss = 0x6000, kIdt = 0x7000,
                   kResult = 0x8000, kCode = 0x10000;
constexpr uint64_t kGsBase = 0x00007f1122334450ULL;  // canonical, or KVM refuses it
constexpr uint64_t kLstar = 0xffffffff81234560ULL;

void Start(KvmRig& rig) {
  GuestMemory& mem = *rig.mem;
  // Identity map of the first 1 GiB with 2 MiB pages.
  Put<uint64_t>(mem, kPml4, kPdpt | 0x3);
  Put<uint64_t>(mem, kPdpt, kPd | 0x3);
  for (uint64_t i = 0; i < 512; ++i) Put<uint64_t>(mem, kPd + 8 * i, (i << 21) | 0x83);
  Put<uint64_t>(mem, kGdt + 0x08, 0x00209a0000000000ull);
  Put<uint64_t>(mem, kGdt + 0x10, 0x00cf92000000ffffull);
  Put<uint64_t>(mem, kGdt + 0x18, 0x0000890000000067ull | ((kTss & 0xffffff) << 16));
  REQUIRE(mem.Write(kCode, {vs_start, static_cast<size_t>(vs_end - vs_start)}).ok());
  auto sregs = rig.vcpu->GetSregs();
  REQUIRE(sregs.ok());
  REQUIRE(rig.vcpu->SetSregs(LongModeSregs(*sregs, {.cr3 = kPml4, .gdt = kGdt, .gdt_limit = 0x1f, .idt = kIdt,
                                                    .tss = kTss, .tss_selector = 0x18}))
              .ok());
  REQUIRE(rig.vcpu->SetMsrs({{0xc0000102, kGsBase}, {0xc0000082, kLstar}}).ok());
  kvm_regs r{};
  r.rip = kCode;
  r.rflags = 0x2;
  REQUIRE(rig.vcpu->SetRegs(r).ok());
}

// Runs until HLT, or until `stop_after` port writes (then returns false). Port 0x80 writes are the only exits.
bool Run(VcpuFd& vcpu, int stop_after) {
  for (int outs = 0; outs < 100000;) {
    auto e = vcpu.Run();
    REQUIRE(e.ok());
    if (std::holds_alternative<exit::Hlt>(*e)) return true;
    auto* io = std::get_if<exit::IoOut>(&*e);
    INFO("unexpected exit " << ExitKindName(*e));
    REQUIRE(io != nullptr);
    CHECK(io->port == 0x80);
    if (++outs == stop_after) return false;
  }
  FAIL("the guest did not finish");
  return false;
}

struct Result {
  uint64_t acc, xmm_lo, xmm_hi, gs_base, rounds;
};
Result Read(const GuestMemory& mem) {
  return {Get<uint64_t>(mem, kResult), Get<uint64_t>(mem, kResult + 8), Get<uint64_t>(mem, kResult + 16),
          Get<uint64_t>(mem, kResult + 0x18), Get<uint64_t>(mem, kResult + 0x20)};
}

TEST_CASE("a vCPU captured mid-run and restored in another VM finishes with the result of one that never moved") {
  if (!KvmUsable()) return;
  KvmRig reference = MakeRig();
  Start(reference);
  REQUIRE(Run(*reference.vcpu, -1));
  const Result want = Read(*reference.mem);
  CHECK(want.rounds == 600);
  CHECK(want.gs_base == kGsBase);

  KvmRig source = MakeRig();
  Start(source);
  REQUIRE_FALSE(Run(*source.vcpu, 250));  // stopped at the 250th `out`, its instruction not yet completed
  auto state = CaptureVcpuState(*source.vcpu);
  REQUIRE(state.ok());
  CHECK(state->regs.rbx == 250);  // the loop counter
  auto carried = DecodeVcpuState(EncodeVcpuState(*state));  // as it travels between nodes
  REQUIRE(carried.ok());

  KvmRig target = MakeRig();
  // The guest's memory comes along (between nodes, the DSM moves it page by page).
  auto from = source.mem->HostSpan(0, 16 << 20);
  auto to = target.mem->HostSpan(0, 16 << 20);
  REQUIRE(from.ok());
  REQUIRE(to.ok());
  std::memcpy(to->data(), from->data(), from->size());
  REQUIRE(RestoreVcpuState(*target.vcpu, *carried).ok());
  auto lstar = target.vcpu->GetMsrs({0xc0000082});
  REQUIRE(lstar.ok());
  CHECK((*lstar)[0] == kLstar);
  REQUIRE(Run(*target.vcpu, -1));
  const Result got = Read(*target.mem);
  CHECK(got.acc == want.acc);
  CHECK(got.xmm_lo == want.xmm_lo);
  CHECK(got.xmm_hi == want.xmm_hi);
  CHECK(got.gs_base == kGsBase);
  CHECK(got.rounds == 600);
  // The source, continued, agrees too: capturing did not disturb it.
  REQUIRE(Run(*source.vcpu, -1));
  CHECK(Read(*source.mem).acc == want.acc);
}

}  // namespace
}  // namespace coalesce
