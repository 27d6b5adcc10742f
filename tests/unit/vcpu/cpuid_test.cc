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
      Entry(0xd, 1, 0xf, 0, 0, 0),
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
  uint32_t pv = Find(out, KVM_CPUID_FEATURES)->eax;
  CHECK((pv & (1u << KVM_FEATURE_CLOCKSOURCE2)) != 0);  // kvmclock stays
  CHECK((pv & (1u << KVM_FEATURE_PV_EOI)) == 0);
  CHECK((pv & (1u << KVM_FEATURE_PV_SEND_IPI)) == 0);
  CHECK((pv & (1u << KVM_FEATURE_PV_UNHALT)) == 0);
  CHECK((pv & (1u << KVM_FEATURE_ASYNC_PF_INT)) == 0);
  CHECK(Find(out, 0x80000001)->edx == 4);  // untouched leaves unchanged
}

TEST_CASE("CPUID keeps compacted XSAVE when asked") {
  std::vector<kvm_cpuid_entry2> supported = {Entry(0xd, 1, 0xf, 0, 0, 0)};
  auto out = FilterCpuid(supported, {.apic_id = 0, .vcpu_count = 1, .hide_compacted_xsave = false});
  CHECK(out[0].eax == 0xf);
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
