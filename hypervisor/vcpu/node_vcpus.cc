#include "hypervisor/vcpu/node_vcpus.h"

#include <asm/kvm_para.h>
#include <x86intrin.h>

#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/vcpu/model_msrs.h"

namespace coalesce {
namespace {

constexpr uint32_t kMsrIa32Tsc = 0x10;

}  // namespace

void CreateNodeApics(const NodeVcpusSpec& spec, InterruptRouter* router, TimerService* timers,
                     std::function<void(uint32_t id)> kick, std::vector<std::unique_ptr<LocalApic>>* lapics) {
  lapics->resize(spec.vcpu_count);
  for (uint32_t id = spec.first_id; id < spec.vcpu_count; ++id) {
    (*lapics)[id] = std::make_unique<LocalApic>(id, id == 0, router, timers, [kick, id] { kick(id); });
  }
}

absl::Status CreateNodeVcpus(const NodeVcpusSpec& spec, const KvmSystem& kvm, VmFd& vm,
                             const std::vector<std::unique_ptr<LocalApic>>& lapics,
                             std::vector<std::unique_ptr<Vcpu>>* vcpus) {
  ASSIGN_OR_RETURN(auto supported, kvm.SupportedCpuid());
  // PV EOI wherever KVM can hand its MSR to user space (Linux 5.10+: every node of a coalesced guest, which
  // must show one CPU, runs such a kernel in practice); the vCPU loop serves it (vcpu.h).
  const bool pv_eoi = vm.CanSendMsrsToUserSpace();
  if (pv_eoi) {
    static constexpr uint32_t kPvEoiMsr[] = {MSR_KVM_PV_EOI_EN};
    RETURN_IF_ERROR(vm.SendMsrsToUserSpace(kPvEoiMsr));
  } else {
    LOG_INFO("KVM cannot hand MSRs to user space (Linux 5.10+): no PV EOI for the guest");
  }
  vcpus->resize(spec.vcpu_count);
  for (uint32_t id = spec.first_id; id < spec.vcpu_count; ++id) {
    ASSIGN_OR_RETURN(VcpuFd fd, vm.CreateVcpu(id));
    RETURN_IF_ERROR(
        fd.SetCpuid(FilterCpuid(supported, {.apic_id = id,
                                          .vcpu_count = spec.vcpu_count,
                                          .model = spec.model,
                                          .private_caches = spec.private_caches,
                                          .pv_eoi = pv_eoi})));
    ApplyModelMsrs(fd, id);
    if (spec.tsc_offset) {
      // KVM's TSC-offset attribute, not the MSR: KVM takes an IA32_TSC write within a second of what it expects
      // from this VM's creation as "synchronizing" and keeps the VM's own offset, so an edge started within a
      // second of the home kept its own TSC (warps of ~0.4 s between nodes, measured by the tsc_sync guest).
      if (absl::Status st = fd.SetTscOffset(-*spec.tsc_offset); !st.ok()) {
        LOG_DEBUG("vcpu%u: %s; writing IA32_TSC instead", id, st.ToString());
        RETURN_IF_ERROR(fd.SetMsrs({{kMsrIa32Tsc, __rdtsc() - static_cast<uint64_t>(*spec.tsc_offset)}}));
      }
    }
    Vcpu::Wiring w = spec.wiring;
    w.lapic = lapics[id].get();
    if (id == 0) w.ext_int_ack = spec.bsp_ext_int_ack;
    (*vcpus)[id] = std::make_unique<Vcpu>(std::move(fd), /*bootstrap=*/id == 0, std::move(w));
  }
  return absl::OkStatus();
}

}  // namespace coalesce
