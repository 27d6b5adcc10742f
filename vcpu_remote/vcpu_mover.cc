#include "vcpu_remote/vcpu_mover.h"

#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {
namespace {

node_msg::VcpuRunState ToWire(Vcpu::State s) {
  switch (s) {
    case Vcpu::State::kHalted: return node_msg::VcpuRunState::kHalted;
    case Vcpu::State::kRunning: return node_msg::VcpuRunState::kRunning;
    default: return node_msg::VcpuRunState::kWaitForSipi;  // kCreated: an AP that never ran waits for a SIPI
  }
}

Vcpu::State FromWire(node_msg::VcpuRunState s) {
  switch (s) {
    case node_msg::VcpuRunState::kHalted: return Vcpu::State::kHalted;
    case node_msg::VcpuRunState::kRunning: return Vcpu::State::kRunning;
    case node_msg::VcpuRunState::kWaitForSipi: break;
  }
  return Vcpu::State::kWaitForSipi;
}

}  // namespace

absl::StatusOr<ParkedVcpu> ParkAndCapture(Vcpu& vcpu) {
  ParkedVcpu parked;
  parked.id = vcpu.id();
  parked.run = vcpu.Park();
  if (parked.run.state == Vcpu::State::kStopped) {
    return absl::FailedPreconditionError(absl::StrFormat("vCPU %u has stopped", parked.id));
  }
  if (parked.run.state == Vcpu::State::kCreated) parked.run.state = Vcpu::State::kWaitForSipi;
  ASSIGN_OR_RETURN(parked.state, CaptureVcpuState(vcpu.fd()));
  return parked;
}

node_msg::VcpuMigrate SealMove(ParkedVcpu& parked, LocalApic& lapic) {
  parked.state.lapic = lapic.SaveState();
  lapic.Reset();
  return node_msg::VcpuMigrate{.vcpu_id = parked.id,
                               .run_state = ToWire(parked.run.state),
                               .halted_with_interrupts = parked.run.halted_with_interrupts,
                               .state = EncodeVcpuState(parked.state)};
}

absl::StatusOr<Vcpu::RunState> UnpackMove(const node_msg::VcpuMigrate& message, Vcpu& vcpu, LocalApic& lapic) {
  if (message.vcpu_id != vcpu.id()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("a state for vCPU %u offered to vCPU %u", message.vcpu_id, vcpu.id()));
  }
  if (vcpu.running_thread()) {
    return absl::FailedPreconditionError(absl::StrFormat("vCPU %u already runs on this node", vcpu.id()));
  }
  absl::StatusOr<VcpuState> state = DecodeVcpuState(message.state);
  if (!state.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("vCPU %u's state: %s", vcpu.id(), state.status().message()));
  }
  RETURN_IF_ERROR(RestoreVcpuState(vcpu.fd(), *state));
  lapic.LoadState(state->lapic);
  return Vcpu::RunState{FromWire(message.run_state), message.halted_with_interrupts};
}

absl::Status RestoreParked(const ParkedVcpu& parked, Vcpu& vcpu, LocalApic& lapic) {
  RETURN_IF_ERROR(RestoreVcpuState(vcpu.fd(), parked.state));
  lapic.LoadState(parked.state.lapic);
  return absl::OkStatus();
}

}  // namespace coalesce
