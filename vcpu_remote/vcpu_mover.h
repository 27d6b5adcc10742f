// The two ends of moving one vCPU between nodes of a coalesced VM (issue 12), shared by the home and the edge
// runtime so that both pack and unpack a vCPU the same way: the thread parked at an exit boundary, KVM's state
// captured (hypervisor/vcpu/vcpu_state.h), the user-space APIC's state taken beside it, all in one
// VcpuMigrate node message; at the other end the same vCPU id (created at start on every node, idle until it
// arrives) gets that state back and its thread resumes where it stopped. The routing side of a move (who
// gets the interrupts in flight) is ForwardingInterruptRouter's.
#pragma once

#include "absl/status/statusor.h"
#include "hypervisor/irq/local_apic.h"
#include "hypervisor/vcpu/vcpu.h"
#include "hypervisor/vcpu/vcpu_state.h"
#include "vcpu_remote/node_message.h"

namespace coalesce {

// A vCPU whose thread is parked, with KVM's part of its state; the APIC's part is taken by SealMove.
struct ParkedVcpu {
  uint32_t id = 0;
  Vcpu::RunState run;
  VcpuState state;
};

// Parks `vcpu` (waits for its thread) and captures KVM's state. FailedPrecondition if the vCPU had stopped.
absl::StatusOr<ParkedVcpu> ParkAndCapture(Vcpu& vcpu);
// Takes `lapic`'s state into `parked` and resets the APIC (its timer no longer runs here), then encodes the
// message. Call when `lapic` no longer receives interrupts on this node (ForwardingInterruptRouter::Detach).
node_msg::VcpuMigrate SealMove(ParkedVcpu& parked, LocalApic& lapic);
// Writes a moved vCPU's state into `vcpu` (parked or never started) and `lapic` (not yet registered with the
// router); returns where its thread must resume. Errors name what was wrong with the state.
absl::StatusOr<Vcpu::RunState> UnpackMove(const node_msg::VcpuMigrate& message, Vcpu& vcpu, LocalApic& lapic);
// A parked vCPU put back as it was (a move that could not be sent).
absl::Status RestoreParked(const ParkedVcpu& parked, Vcpu& vcpu, LocalApic& lapic);

}  // namespace coalesce
