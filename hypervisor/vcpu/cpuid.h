// The CPUID table a vCPU sees: KVM's supported set with the APIC ids set per vCPU and every feature the
// user-space interrupt controller cannot honour removed. Pure function, unit-tested without /dev/kvm.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace coalesce {

struct CpuidConfig {
  uint32_t apic_id = 0;
  uint32_t vcpu_count = 1;
  // Hide XSAVEC/XSAVES (compacted XSAVE format): fewer instructions for the PVM completion path to cover.
  bool hide_compacted_xsave = true;
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
}  // namespace cpuid_bits

}  // namespace coalesce
