#include "hypervisor/vcpu/cpuid.h"

#include <asm/kvm_para.h>

#include "absl/strings/str_cat.h"

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

// Leaf 1 EDX is the x86-64 v1 set already (FPU, TSC, MSR, PAE, CX8, APIC, SEP, PGE, CMOV, PAT, CLFSH, MMX,
// FXSR, SSE, SSE2, ...); the baseline trims ECX and the extended leaves.
void ApplyBaseline(kvm_cpuid_entry2& e) {
  switch (e.function) {
    case 1:
      e.ecx &= cpuid_bits::kLeaf1EcxSse3 | cpuid_bits::kLeaf1EcxHypervisor;
      break;
    case 7:
      if (e.index == 0) {
        e.ebx &= cpuid_bits::kLeaf7EbxSmep;  // SMEP changes page checks only, no instruction
        e.ecx = 0;
        e.edx &= cpuid_bits::kLeaf7EdxSpeculationControls;
      } else {
        e.eax = e.ebx = e.ecx = e.edx = 0;
      }
      break;
    case 0xd:  // XSAVE is hidden, so are its state components
    case 0x14:  // processor trace
    case 0x19:  // key locker
    case 0x1d:  // AMX tiles
    case 0x1e:
      e.eax = e.ebx = e.ecx = e.edx = 0;
      break;
    case 0x80000001:
      e.ecx &= cpuid_bits::kExt1EcxLahfLm;
      break;
    default:
      break;
  }
}

}  // namespace

// (<cpuid.h> is shadowed by this directory's cpuid.h, hence the asm.)
HostCpuidResult HostCpuid(uint32_t leaf) {
  HostCpuidResult r{leaf, 0, 0, 0};
  asm volatile("cpuid" : "+a"(r.eax), "=b"(r.ebx), "+c"(r.ecx), "=d"(r.edx));
  return r;
}

CpuModel DefaultCpuModel() {
  const bool vmx = (HostCpuid(1).ecx & cpuid_bits::kLeaf1EcxVmx) != 0;
  const bool svm = HostCpuid(0x80000000).eax >= 0x80000001 &&
                   (HostCpuid(0x80000001).ecx & cpuid_bits::kExt1EcxSvm) != 0;
  return (vmx || svm) ? CpuModel::kHost : CpuModel::kBaseline;
}

const char* CpuModelName(CpuModel model) { return model == CpuModel::kHost ? "host" : "baseline"; }

absl::StatusOr<CpuModel> ResolveCpuModel(std::string_view name, std::string_view what) {
  if (name.empty() || name == "auto") return DefaultCpuModel();
  if (name == "host") return CpuModel::kHost;
  if (name == "baseline") return CpuModel::kBaseline;
  return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": '", std::string(name),
                                                 "' is not a CPU model (host, baseline or auto)"));
}

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
    if (config.model == CpuModel::kBaseline) ApplyBaseline(e);
  }
  return out;
}

}  // namespace coalesce
