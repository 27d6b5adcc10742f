#include "hypervisor/vcpu/cpuid.h"

#include <asm/kvm_para.h>

#include <catch2/catch.hpp>

namespace coalesce {
namespace {

kvm_cpuid_entry2 Entry(uint32_t fn, uint32_t idx, uint32_t eax, uint32_t ebx, uint32_t ecx, uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = fn;
  e.index = idx;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

const kvm_cpuid_entry2* Find(const std::vector<kvm_cpuid_entry2>& v, uint32_t fn, uint32_t idx = 0) {
  for (const auto& e : v)
    if (e.function == fn && e.index == idx) return &e;
  return nullptr;
}

TEST_CASE("CPUID sets APIC ids and removes what a user-space APIC cannot honour") {
  std::vector<kvm_cpuid_entry2> supported = {
      Entry(1, 0, 0x000806f1, 0xff000800, 0xffffffff, 0xffffffff),
      Entry(0xb, 0, 1, 1, 0x100, 0),
      Entry(0xd, 1, 0xf, 0x340, 0x1800, 0),  // XSAVEOPT/C/S, XGETBV1; CET state in IA32_XSS
      Entry(KVM_CPUID_FEATURES, 0, 0xffffffff, 0, 0, 0),
      Entry(0x80000001, 0, 1, 2, 3, 4),
  };
  auto out = FilterCpuid(supported, {.apic_id = 3, .vcpu_count = 4});
  REQUIRE(out.size() == supported.size());
  const auto* leaf1 = Find(out, 1);
  REQUIRE(leaf1);
  CHECK((leaf1->ebx >> 24) == 3);
  CHECK(((leaf1->ebx >> 16) & 0xff) == 4);
  CHECK((leaf1->ebx & 0xffff) == 0x0800);  // brand/CLFLUSH fields kept
  CHECK((leaf1->ecx & cpuid_bits::kLeaf1EcxX2Apic) == 0);
  CHECK((leaf1->ecx & cpuid_bits::kLeaf1EcxTscDeadline) == 0);
  CHECK((leaf1->ecx & cpuid_bits::kLeaf1EcxHypervisor) != 0);
  CHECK((leaf1->edx & cpuid_bits::kLeaf1EdxApic) != 0);
  CHECK(Find(out, 0xb)->edx == 3);
  CHECK((Find(out, 0xd, 1)->eax & (cpuid_bits::kLeafDSub1EaxXsaves | cpuid_bits::kLeafDSub1EaxXsavec)) == 0);
  CHECK((Find(out, 0xd, 1)->eax & 0x5) == 0x5);  // XSAVEOPT and XGETBV1 stay
  // No supervisor components (IA32_XSS) without XSAVES.
  CHECK(Find(out, 0xd, 1)->ecx == 0);
  CHECK(Find(out, 0xd, 1)->edx == 0);
  uint32_t pv = Find(out, KVM_CPUID_FEATURES)->eax;
  CHECK((pv & (1u << KVM_FEATURE_CLOCKSOURCE2)) != 0);  // kvmclock stays
  CHECK((pv & (1u << KVM_FEATURE_PV_EOI)) == 0);
  CHECK((pv & (1u << KVM_FEATURE_PV_SEND_IPI)) == 0);
  CHECK((pv & (1u << KVM_FEATURE_PV_UNHALT)) == 0);
  CHECK((pv & (1u << KVM_FEATURE_ASYNC_PF_INT)) == 0);
  CHECK(Find(out, 0x80000001)->edx == 4);  // untouched leaves unchanged
}

TEST_CASE("CPUID offers PV EOI only when the VMM serves it") {
  std::vector<kvm_cpuid_entry2> supported = {Entry(KVM_CPUID_FEATURES, 0, 1u << KVM_FEATURE_CLOCKSOURCE2, 0, 0, 0)};
  const uint32_t without = FilterCpuid(supported, {.apic_id = 0, .vcpu_count = 1})[0].eax;
  const uint32_t with = FilterCpuid(supported, {.apic_id = 0, .vcpu_count = 1, .pv_eoi = true})[0].eax;
  CHECK(without == (1u << KVM_FEATURE_CLOCKSOURCE2));
  CHECK(with == ((1u << KVM_FEATURE_CLOCKSOURCE2) | (1u << KVM_FEATURE_PV_EOI)));
}

TEST_CASE("CPUID keeps compacted XSAVE when asked") {
  std::vector<kvm_cpuid_entry2> supported = {Entry(0xd, 1, 0xf, 0, 0x1800, 0)};
  auto out = FilterCpuid(supported, {.apic_id = 0, .vcpu_count = 1, .hide_compacted_xsave = false});
  CHECK(out[0].eax == 0xf);
  CHECK(out[0].ecx == 0x1800);
}

TEST_CASE("The baseline CPU model leaves only x86-64 v1 + SSE3 and the speculation controls") {
  std::vector<kvm_cpuid_entry2> supported = {
      Entry(1, 0, 0x000806f1, 0xff000800, 0xffffffff, 0xffffffff),
      Entry(7, 0, 0, 0xffffffff, 0xffffffff, 0xffffffff),
      Entry(7, 1, 0xffffffff, 0, 0, 0),
      Entry(0xd, 0, 0x2e7, 0x340, 0x988, 0),
      Entry(0x80000001, 0, 0, 0, 0xffffffff, 0x2c100800),
  };
  auto out = FilterCpuid(supported, {.apic_id = 1, .vcpu_count = 2, .model = CpuModel::kBaseline});
  const auto* leaf1 = Find(out, 1);
  CHECK(leaf1->ecx == (cpuid_bits::kLeaf1EcxSse3 | cpuid_bits::kLeaf1EcxHypervisor));
  CHECK(leaf1->edx == 0xffffffff);  // x86-64 v1 lives in EDX, kept (HTT, APIC set anyway)
  CHECK((leaf1->ebx >> 24) == 1);   // the per-vCPU fields are still filled in
  const auto* leaf7 = Find(out, 7);
  CHECK(leaf7->ebx == cpuid_bits::kLeaf7EbxSmep);  // no SMAP, ERMS, AVX-512, FSGSBASE...
  CHECK(leaf7->ecx == 0);
  CHECK(leaf7->edx == cpuid_bits::kLeaf7EdxSpeculationControls);
  CHECK(Find(out, 7, 1)->eax == 0);
  CHECK(Find(out, 0xd, 0)->eax == 0);  // no XSAVE state components
  CHECK(Find(out, 0x80000001)->ecx == cpuid_bits::kExt1EcxLahfLm);
  CHECK(Find(out, 0x80000001)->edx == 0x2c100800);  // SYSCALL, NX, RDTSCP, LM kept
}

TEST_CASE("The host CPU model keeps the host's instruction set extensions") {
  std::vector<kvm_cpuid_entry2> supported = {Entry(7, 0, 0, 0xffffffff, 0, 0)};
  auto out = FilterCpuid(supported, {.apic_id = 0, .vcpu_count = 1, .model = CpuModel::kHost});
  CHECK((out[0].ebx & cpuid_bits::kLeaf7EbxAvx512f) != 0);
  CHECK((out[0].ebx & cpuid_bits::kLeaf7EbxSmap) != 0);
}

// The leaves a guest reads for its cache and core topology, with the values of real CPUs: an AMD EPYC 7601
// (family 17h model 1; QEMU's EPYC model has the same cache leaves) with 2 threads per core, and an Intel
// core (leaf 4's L3 shared by 16 threads, leaf 0xb's SMT level 1 bit wide).
std::vector<kvm_cpuid_entry2> TopologyLeaves() {
  return {
      Entry(4, 3, 0x0003c163, 0x03c0003f, 0x00003fff, 0x00000006),           // Intel L3: 16 sharing
      Entry(0xb, 0, 0x00000001, 0x00000002, 0x00000100, 0),                  // Intel SMT level: 2 threads
      Entry(0xb, 1, 0x00000004, 0x00000008, 0x00000201, 0),                  // Intel core level: kept
      Entry(0x80000006, 0, 0x48002200, 0x68004200, 0x02006140, 0x00808140),  // AMD L2 (ECX) and L3 (EDX)
      Entry(0x8000001d, 3, 0x0001c163, 0x03c0003f, 0x00001fff, 0x00000001),  // AMD L3: 8 sharing
      Entry(0x8000001e, 0, 0, 0, 0, 0),                                      // as KVM passes it: zeros
      Entry(0x80000008, 0, 0x3030, 0, 0x4007, 0),                            // 8 cores, APIC id core bits 4
  };
}

// The last-level-cache id Linux 6.1 gives a CPU (arch/x86/kernel/cpu/cacheinfo.c), or -1 for none (no LLC
// siblings): AMD family 17h models 0-1fh take APIC id bits 3 and up whenever the legacy leaf reports an L3;
// Intel groups by leaf 4's sharing count rounded up to a power of two.
int LinuxAmdZenLlcId(const std::vector<kvm_cpuid_entry2>& leaves, uint32_t apic_id) {
  return Find(leaves, 0x80000006)->edx == 0 ? -1 : static_cast<int>(apic_id >> 3);
}
// Without TOPOEXT (QEMU's EPYC model under KVM shows none) Linux 6.1's AMD code takes the LLC to be the
// package: the APIC id above the core bits, from 0x80000008 ECX's ApicIdSize, else NC rounded up (amd.c).
int LinuxAmdNoTopoextLlcId(const std::vector<kvm_cpuid_entry2>& leaves, uint32_t apic_id) {
  const uint32_t ecx = Find(leaves, 0x80000008)->ecx;
  uint32_t bits = (ecx >> 12) & 0xf;
  if (bits == 0) {
    while ((1u << bits) < (ecx & 0xff) + 1) ++bits;
  }
  return static_cast<int>(apic_id >> bits);
}
int LinuxIntelLlcId(const std::vector<kvm_cpuid_entry2>& leaves, uint32_t apic_id) {
  const uint32_t sharing = ((Find(leaves, 4, 3)->eax >> 14) & 0xfff) + 1;
  uint32_t bits = 0;
  while ((1u << bits) < sharing) ++bits;
  return static_cast<int>(apic_id & ~((1u << bits) - 1));
}

TEST_CASE("Private caches: no two vCPUs share a last-level cache or a core, as Linux reads the leaves") {
  for (uint32_t a = 0; a < 8; ++a) {
    for (uint32_t b = a + 1; b < 8; ++b) {
      auto va = FilterCpuid(TopologyLeaves(), {.apic_id = a, .vcpu_count = 8, .private_caches = true});
      auto vb = FilterCpuid(TopologyLeaves(), {.apic_id = b, .vcpu_count = 8, .private_caches = true});
      CHECK(LinuxAmdZenLlcId(va, a) == -1);
      CHECK(LinuxAmdNoTopoextLlcId(va, a) != LinuxAmdNoTopoextLlcId(vb, b));
      CHECK(LinuxIntelLlcId(va, a) != LinuxIntelLlcId(vb, b));
      CHECK(Find(va, 0x8000001e)->ebx != Find(vb, 0x8000001e)->ebx);  // AMD core ids differ
    }
  }
  auto v5 = FilterCpuid(TopologyLeaves(), {.apic_id = 5, .vcpu_count = 8, .private_caches = true});
  CHECK(((Find(v5, 0x8000001d, 3)->eax >> 14) & 0xfff) == 0);  // AMD's sharing field: one thread
  CHECK((Find(v5, 0x8000001d, 3)->eax & 0x3fff) == 0x0163);     // the cache's level and type kept
  CHECK(Find(v5, 0x8000001e)->eax == 5);                          // extended APIC id
  CHECK((Find(v5, 0x8000001e)->ebx >> 8 & 0xff) == 0);            // one thread per core
  CHECK((Find(v5, 0xb, 0)->eax & 0x1f) == 0);                     // SMT level: no APIC id bits
  CHECK((Find(v5, 0xb, 0)->ebx & 0xffff) == 1);
  CHECK(Find(v5, 0xb, 1)->eax == 4);                              // core level unchanged
  CHECK(Find(v5, 0x80000006)->ecx == 0x02006140);                 // L2 still described
}

TEST_CASE("Without private caches the host's cache sharing stands (one-node guests)") {
  auto v1 = FilterCpuid(TopologyLeaves(), {.apic_id = 1, .vcpu_count = 8});
  auto v6 = FilterCpuid(TopologyLeaves(), {.apic_id = 6, .vcpu_count = 8});
  CHECK(LinuxAmdZenLlcId(v1, 1) == LinuxAmdZenLlcId(v6, 6));
  CHECK(LinuxIntelLlcId(v1, 1) == LinuxIntelLlcId(v6, 6));
  CHECK(LinuxAmdNoTopoextLlcId(v1, 1) == LinuxAmdNoTopoextLlcId(v6, 6));
  CHECK(Find(v1, 0x8000001d, 3)->eax == 0x0001c163);
}

TEST_CASE("CPU model names resolve; auto picks the default for this host") {
  CHECK(*ResolveCpuModel("host", "--cpu") == CpuModel::kHost);
  CHECK(*ResolveCpuModel("baseline", "--cpu") == CpuModel::kBaseline);
  CHECK(*ResolveCpuModel("auto", "--cpu") == DefaultCpuModel());
  CHECK(*ResolveCpuModel("", "--cpu") == DefaultCpuModel());
  auto bad = ResolveCpuModel("pentium", "guest.cpu_model");
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find("guest.cpu_model: 'pentium'") != std::string::npos);
}

}  // namespace
}  // namespace coalesce
