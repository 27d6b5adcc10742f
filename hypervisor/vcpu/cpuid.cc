#include "hypervisor/vcpu/cpuid.h"

#include <asm/kvm_para.h>

namespace coalesce {
namespace {

// Paravirtual features that assume KVM's in-kernel local APIC (or that we do not serve): PV EOI writes to
// an in-kernel APIC page, PV send-IPI and PV unhalt are hypercalls KVM answers with its own APIC, async PF
// needs KVM to inject its own interrupts, ext-dest-id widens MSI destinations we do not decode.
constexpr uint32_t kPvFeaturesNeedingKernelApic =
    (1u << KVM_FEATURE_ASYNC_PF) | (1u << KVM_FEATURE_PV_EOI) | (1u << KVM_FEATURE_PV_UNHALT) |
    (1u << KVM_FEATURE_PV_TLB_FLUSH) | (1u << KVM_FEATURE_ASYNC_PF_VMEXIT) | (1u << KVM_FEATURE_PV_SEND_IPI) |
    (1u << KVM_FEATURE_POLL_CONTROL) | (1u << KVM_FEATURE_PV_SCHED_YIELD) | (1u << KVM_FEATURE_ASYNC_PF_INT) |
    (1u << KVM_FEATURE_MSI_EXT_DEST_ID) | (1u << KVM_FEATURE_HC_MAP_GPA_RANGE) |
    (1u << KVM_FEATURE_MIGRATION_CONTROL) | (1u << KVM_FEATURE_STEAL_TIME);

}  // namespace

std::vector<kvm_cpuid_entry2> FilterCpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                          const CpuidConfig& config) {
  std::vector<kvm_cpuid_entry2> out = supported;
  const uint32_t apic_id = config.apic_id & 0xff;
  for (auto& e : out) {
    switch (e.function) {
      case 1:
        e.ebx = (e.ebx & 0x0000ffffu) | (apic_id << 24) | ((config.vcpu_count & 0xff) << 16);
        e.ecx &= ~(cpuid_bits::kLeaf1EcxX2Apic | cpuid_bits::kLeaf1EcxTscDeadline);
        e.ecx |= cpuid_bits::kLeaf1EcxHypervisor;
        e.edx |= cpuid_bits::kLeaf1EdxApic;
        if (config.vcpu_count > 1) e.edx |= cpuid_bits::kLeaf1EdxHtt;
        break;
      case 0xb:
      case 0x1f:
        // Extended topology: EDX is the x2APIC id, which must equal the xAPIC id we report in leaf 1.
        e.edx = apic_id;
        break;
      case 0xd:
        if (e.index == 1 && config.hide_compacted_xsave) {
          e.eax &= ~(cpuid_bits::kLeafDSub1EaxXsavec | cpuid_bits::kLeafDSub1EaxXsaves);
        }
        break;
      case KVM_CPUID_FEATURES:
        e.eax &= ~kPvFeaturesNeedingKernelApic;
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace coalesce
