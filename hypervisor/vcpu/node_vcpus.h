// The vCPUs of one node of a guest, home or edge, built one way (issue 12's "one node builder"): an APIC and a
// KVM vCPU for every id of the guest, because a vCPU may move to any node while the guest runs and KVM creates a
// vCPU once per VM (it never destroys one). Each vCPU shows the guest's CPU model (CPUID for its APIC id and the
// model MSRs); on an edge its TSC agrees with the home's. Those placed on this node run; the others stay idle
// until one moves here (vcpu_remote/vcpu_mover).
//
// Two steps, because the home wires its PIC to the BSP's APIC before the vCPUs exist.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "hypervisor/base/timer_service.h"
#include "hypervisor/irq/interrupt_router.h"
#include "hypervisor/irq/local_apic.h"
#include "hypervisor/kvm/kvm_system.h"
#include "hypervisor/kvm/vm_fd.h"
#include "hypervisor/vcpu/cpuid.h"
#include "hypervisor/vcpu/vcpu.h"

namespace coalesce {

struct NodeVcpusSpec {
  uint32_t vcpu_count = 0;  // vCPUs of the whole guest
  uint32_t first_id = 0;    // 0 at home, 1 on an edge
  CpuModel model = CpuModel::kBaseline;
  // CpuidConfig::private_caches: the guest spans hosts or NUMA domains (every edge; home when it has edges or
  // guest NUMA).
  bool private_caches = false;
  // Edges: host TSC - guest TSC at the home, so that every node's guest TSC agrees. Unset at home.
  std::optional<int64_t> tsc_offset;
  Vcpu::Wiring wiring;  // io, run_control, memory, sample_rip; lapic is each vCPU's own
  // The BSP's INTA cycle at the PIC (home only).
  std::function<uint8_t()> bsp_ext_int_ack;
};

// Both steps fill vectors indexed by vCPU id, null below `first_id` (an edge never holds the BSP, which carries
// the PIC's line).
// Step 1: the APICs (not registered with `router`: the caller registers those whose vCPUs run here). `kick(id)`
// wakes vCPU `id` once it exists.
void CreateNodeApics(const NodeVcpusSpec& spec, InterruptRouter* router, TimerService* timers,
                     std::function<void(uint32_t id)> kick, std::vector<std::unique_ptr<LocalApic>>* lapics);
// Step 2: the KVM vCPUs (not started), each wired to its APIC from step 1.
absl::Status CreateNodeVcpus(const NodeVcpusSpec& spec, const KvmSystem& kvm, VmFd& vm,
                             const std::vector<std::unique_ptr<LocalApic>>& lapics,
                             std::vector<std::unique_ptr<Vcpu>>* vcpus);

}  // namespace coalesce
