#include "hypervisor/vcpu/cpuid.h"

#include <asm/kvm_para.h>

#include "absl/strings/str_cat.h"

namespace coalesce {
namespace {

// Paravirtual features that assume KVM's in-kernel local APIC (or that we do not serve): PV EOI is KVM's only
// with its own APIC (kept when CpuidConfig::pv_eoi says the VMM serves it), PV send-IPI and PV unhalt are hypercalls KVM answers with its own APIC, async PF
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

// Private caches (CpuidConfig::private_caches): every cache level shared by one logical processor, in the
// Intel and AMD cache descriptions. On AMD also one core per package (below), and no L3 in the legacy leaf:
// Linux takes family 17h models 0-1fh's LLC from the APIC id (bits 3 and up) whenever an L3 is reported,
// whatever the sharing fields say. The core id in AMD's extended APIC leaf (KVM leaves it 0 for every vCPU) is
// the APIC id, one thread per core, so that no two vCPUs look like SMT siblings either; for the same reason
// Intel's extended topology gets an SMT level of one thread (no APIC id bits), where KVM passes the host's.
void MakeCachesPrivate(kvm_cpuid_entry2& e, uint32_t apic_id) {
  constexpr uint32_t kSharingField = 0xfffu << 14;  // EAX[25:14]: logical processors sharing, minus 1
  constexpr uint32_t kLevelTypeSmt = 1;              // ECX[15:8] of leaves 0xb and 0x1f
  switch (e.function) {
    case 0xb:
    case 0x1f:
      if (((e.ecx >> 8) & 0xff) == kLevelTypeSmt) {
        e.eax &= ~0x1fu;  // bits of the APIC id that number threads in a core: none
        e.ebx = (e.ebx & ~0xffffu) | 1;
      }
      break;
    case 4:
    case 0x8000001d:
      e.eax &= ~kSharingField;
      break;
    case 0x80000006:
      e.edx = 0;
      break;
    case 0x80000008:
      // NC (cores per package, minus 1) and ApicIdSize: without TOPOEXT Linux takes an AMD CPU's package, and
      // its LLC, as the APIC id above the core bits these give; none: each vCPU a package of its own.
      e.ecx &= ~0xf0ffu;
      break;
    case 0x8000001e:
      e.eax = apic_id;
      e.ebx = apic_id & 0xff;
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
          // IA32_XSS, whose components these report, exists only with XSAVES: without it there are none (Linux
          // 6.1 checks: "Got supervisor feature N, but XSAVES not advertised", a warning that taints it).
          e.ecx = 0;
          e.edx = 0;
        }
        break;
      case KVM_CPUID_FEATURES:
        e.eax &= ~kPvFeaturesNeedingKernelApic;
        if (config.pv_eoi) e.eax |= 1u << KVM_FEATURE_PV_EOI;
        break;
      default:
        break;
    }
    if (config.private_caches) MakeCachesPrivate(e, apic_id);
    if (config.model == CpuModel::kBaseline) ApplyBaseline(e);
  }
  return out;
}

}  // namespace coalesce
