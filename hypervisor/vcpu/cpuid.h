// The CPUID table a vCPU sees: KVM's supported set with the APIC ids set per vCPU and every feature the
// user-space interrupt controller cannot honour removed. Pure function, unit-tested without /dev/kvm.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace coalesce {

// Which CPU the guest is told it runs on.
enum class CpuModel {
  // What KVM offers on this host, less what the VMM cannot serve (x2APIC, TSC deadline, PV features that
  // need KVM's own APIC, compacted XSAVE). Fastest where guest code runs natively.
  kHost,
  // The x86-64 baseline (v1 + SSE3, plus the speculation-control bits, which change no instruction): no
  // SSSE3/SSE4/AVX/XSAVE/SMAP/FSGSBASE/ERMS/CX16/POPCNT/RDRAND. Two reasons to want it: every node of a
  // coalesced VM must show the same CPU, and the common denominator of heterogeneous hosts is this; and on
  // software-virtualized KVM (PVM) guest-kernel code is run by KVM's instruction emulator, which lacks the
  // newer instructions, so each use of one becomes an exit that the VMM completes in user space (measured:
  // SMAP's clac on every kernel entry, CX16 in SLUB, AVX-512 in blake2s). See docs/EMULATION.md.
  kBaseline,
};

// The CPUID of the host this process runs on (subleaf 0).
struct HostCpuidResult {
  uint32_t eax, ebx, ecx, edx;
};
HostCpuidResult HostCpuid(uint32_t leaf);

// kHost where hardware virtualization runs guest code natively, kBaseline on software-virtualized KVM.
CpuModel DefaultCpuModel();
const char* CpuModelName(CpuModel model);
// "host", "baseline", or "auto"/"" (DefaultCpuModel()). `what` names the setting in the error.
absl::StatusOr<CpuModel> ResolveCpuModel(std::string_view name, std::string_view what);

struct CpuidConfig {
  uint32_t apic_id = 0;
  uint32_t vcpu_count = 1;
  // Hide XSAVEC/XSAVES (compacted XSAVE format): fewer instructions for the PVM completion path to cover.
  bool hide_compacted_xsave = true;
  CpuModel model = CpuModel::kHost;
  // Each vCPU its own core with caches it shares with no other vCPU. For a guest whose vCPUs sit on several
  // hosts or NUMA domains: Linux groups CPUs by the last-level cache they report sharing (a range of APIC
  // ids), and a group that crosses NUMA nodes makes it warn "llc-sibling CPU ... is not on the same node" and
  // taint itself; vCPUs on different hosts share no cache anyway.
  bool private_caches = false;
  // Offer KVM's paravirtual EOI (KVM_FEATURE_PV_EOI), which the VMM serves with its own APIC when KVM hands
  // MSR_KVM_PV_EOI_EN to user space (LocalApic::SetPvEoiMsr): a guest interrupt then ends without an exit.
  bool pv_eoi = false;
};

std::vector<kvm_cpuid_entry2> FilterCpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                          const CpuidConfig& config);

// CPUID bit positions we touch, named for readability and tests.
namespace cpuid_bits {
inline constexpr uint32_t kLeaf1EcxX2Apic = 1u << 21;
inline constexpr uint32_t kLeaf1EcxTscDeadline = 1u << 24;
inline constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
inline constexpr uint32_t kLeaf1EdxApic = 1u << 9;
inline constexpr uint32_t kLeaf1EdxHtt = 1u << 28;
inline constexpr uint32_t kLeafDSub1EaxXsavec = 1u << 1;
inline constexpr uint32_t kLeafDSub1EaxXsaves = 1u << 3;
inline constexpr uint32_t kLeaf1EcxSse3 = 1u << 0;
inline constexpr uint32_t kLeaf1EcxVmx = 1u << 5;
inline constexpr uint32_t kLeaf1EcxCx16 = 1u << 13;
inline constexpr uint32_t kLeaf1EcxPopcnt = 1u << 23;
inline constexpr uint32_t kLeaf1EcxXsave = 1u << 26;
inline constexpr uint32_t kLeaf1EcxAvx = 1u << 28;
inline constexpr uint32_t kLeaf7EbxSmep = 1u << 7;
inline constexpr uint32_t kLeaf7EbxErms = 1u << 9;
inline constexpr uint32_t kLeaf7EbxSmap = 1u << 20;
inline constexpr uint32_t kLeaf7EbxAvx512f = 1u << 16;
// Leaf 7 EDX bits that only describe speculation controls (MSRs), kept in the baseline model: hiding them
// would make the guest assume the worst and turn on costlier mitigations.
inline constexpr uint32_t kLeaf7EdxSpeculationControls =
    (1u << 10) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 29) | (1u << 31);
inline constexpr uint32_t kExt1EcxLahfLm = 1u << 0;
inline constexpr uint32_t kExt1EcxSvm = 1u << 2;
}  // namespace cpuid_bits

}  // namespace coalesce
