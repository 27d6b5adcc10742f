#include "hypervisor/machine/home_vcpu_mover.h"

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/vcpu/exit_status.h"
#include "vcpu_remote/vcpu_mover.h"

namespace coalesce {

HomeVcpuMover::HomeVcpuMover(std::vector<std::unique_ptr<Vcpu>>& vcpus,
                             std::vector<std::unique_ptr<LocalApic>>& lapics, ForwardingInterruptRouter& router,
                             RunControl& run_control, std::function<size_t()> nodes, Send send)
    : vcpus_(vcpus), lapics_(lapics), router_(router), run_control_(run_control), nodes_(std::move(nodes)),
      send_(std::move(send)) {}

absl::StatusOr<HomeVcpuMover::Moved> HomeVcpuMover::Move(uint32_t id, uint16_t to, absl::Duration timeout) {
  if (id >= vcpus_.size() || !vcpus_[id]) {
    return absl::InvalidArgumentError(absl::StrFormat("vCPU %u does not exist (the guest has %u)", id, vcpus_.size()));
  }
  if (id == 0) return absl::InvalidArgumentError("vCPU 0 (the bootstrap processor, wired to the PIC) stays home");
  if (const size_t nodes = nodes_(); to >= nodes) {
    return absl::InvalidArgumentError(absl::StrFormat("node %u does not exist (nodes 0-%u)", to, nodes - 1));
  }
  absl::MutexLock lock(&move_mu_);
  bool cancelled;
  {
    absl::MutexLock l(&mu_);
    cancelled = cancelled_;
  }
  if (cancelled || run_control_.stopping()) return absl::FailedPreconditionError("the VM is stopping");
  const uint16_t from = router_.NodeOf(id);
  if (from == to) return absl::InvalidArgumentError(absl::StrFormat("vCPU %u already runs on node %u", id, to));
  Moved moved{.from = from, .to = to, .pause = absl::ZeroDuration()};
  if (from != 0) {
    ASSIGN_OR_RETURN(absl::Duration pause, MoveHome(id, from, timeout));
    moved.pause += pause;
  }
  if (to != 0) {
    ASSIGN_OR_RETURN(absl::Duration pause, MoveOut(id, to, timeout));
    moved.pause += pause;
  }
  LOG_INFO("vCPU %u moved from node %u to node %u; paused %s", id, from, to, absl::FormatDuration(moved.pause));
  return moved;
}

absl::StatusOr<absl::Duration> HomeVcpuMover::MoveHome(uint32_t id, uint16_t from, absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    awaiting_ = id;
    awaiting_from_ = from;
    done_.reset();
  }
  const auto start = std::chrono::steady_clock::now();
  absl::Status st = router_.ExpectArrival(id, from, [&] { return send_(from, node_msg::VcpuEvict{id}); });
  if (!st.ok()) {
    absl::MutexLock lock(&mu_);
    awaiting_.reset();
    return st;  // nothing changed: the vCPU runs where it ran
  }
  RETURN_IF_ERROR(AwaitDone(timeout, absl::StrFormat("vCPU %u coming home from node %u", id, from)));
  absl::MutexLock lock(&mu_);
  return absl::FromChrono(done_at_ - start);
}

absl::StatusOr<absl::Duration> HomeVcpuMover::MoveOut(uint32_t id, uint16_t to, absl::Duration timeout) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<ParkedVcpu> parked = ParkAndCapture(*vcpus_[id]);
  if (!parked.ok()) {
    if (vcpus_[id]->state() != Vcpu::State::kStopped) vcpus_[id]->Resume(vcpus_[id]->Park());
    return parked.status();
  }
  {
    absl::MutexLock lock(&mu_);
    awaiting_ = id;
    awaiting_from_ = to;
    done_.reset();
  }
  bool detached = false;
  absl::Status st = router_.Detach(id, to, [&] {
    detached = true;
    return send_(to, SealMove(*parked, *lapics_[id]));
  });
  if (!st.ok()) {
    {
      absl::MutexLock lock(&mu_);
      awaiting_.reset();
    }
    // The state never left: the vCPU goes on here as it was.
    if (detached) {
      if (absl::Status back = RestoreParked(*parked, *vcpus_[id], *lapics_[id]); !back.ok()) return back;
      if (absl::Status back = router_.Attach(lapics_[id].get(), nullptr); !back.ok()) return back;
    }
    vcpus_[id]->Resume(parked->run);
    return st;
  }
  RETURN_IF_ERROR(AwaitDone(timeout, absl::StrFormat("vCPU %u arriving on node %u", id, to)));
  absl::MutexLock lock(&mu_);
  return absl::FromChrono(done_at_ - start);
}

absl::Status HomeVcpuMover::AwaitDone(absl::Duration timeout, const std::string& what) {
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_.has_value() || cancelled_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
      result = absl::DeadlineExceededError(absl::StrFormat("%s: not done within %s", what, absl::FormatDuration(timeout)));
    } else if (!done_.has_value()) {
      result = absl::CancelledError(absl::StrFormat("%s: the VM stopped", what));
    } else {
      result = *done_;
    }
    awaiting_.reset();
  }
  if (!result.ok() && !absl::IsCancelled(result)) {
    // Half way: the vCPU runs nowhere, and the guest would wait for it forever.
    run_control_.Stop(exit_status::kHostFailure, absl::StrFormat("moving a vCPU failed: %s", result.message()));
  }
  return result;
}

void HomeVcpuMover::Finish(absl::Status status) {
  absl::MutexLock lock(&mu_);
  done_ = std::move(status);
  done_at_ = std::chrono::steady_clock::now();
}

void HomeVcpuMover::Arrive(uint16_t from, const node_msg::VcpuMigrate& message) {
  const uint32_t id = message.vcpu_id;
  absl::StatusOr<Vcpu::RunState> run = UnpackMove(message, *vcpus_[id], *lapics_[id]);
  if (!run.ok()) {
    Finish(run.status());
    return;
  }
  if (absl::Status st = router_.Attach(lapics_[id].get(), nullptr); !st.ok()) {
    Finish(st);
    return;
  }
  vcpus_[id]->Resume(*run);
  LOG_DEBUG("vCPU %u arrived from node %u", id, from);
  Finish(absl::OkStatus());
}

void HomeVcpuMover::OnMessage(uint16_t from, const node_msg::NodeMessage& message) {
  uint32_t id = 0;
  if (auto* m = std::get_if<node_msg::VcpuDetached>(&message)) id = m->vcpu_id;
  if (auto* m = std::get_if<node_msg::VcpuMigrate>(&message)) id = m->vcpu_id;
  if (auto* m = std::get_if<node_msg::VcpuArrived>(&message)) id = m->vcpu_id;
  {
    absl::MutexLock lock(&mu_);
    if (!awaiting_ || *awaiting_ != id || awaiting_from_ != from || done_.has_value()) {
      ++unexpected_;
      LOG_WARN_SAMPLED("node %u: a vCPU move message for vCPU %u that no move waits for; ignored", from, id);
      return;
    }
  }
  if (std::holds_alternative<node_msg::VcpuDetached>(message)) {
    router_.SourceDetached(id);
  } else if (auto* migrate = std::get_if<node_msg::VcpuMigrate>(&message)) {
    Arrive(from, *migrate);
  } else if (std::holds_alternative<node_msg::VcpuArrived>(message)) {
    router_.ArrivalConfirmed(id);
    Finish(absl::OkStatus());
  }
}

void HomeVcpuMover::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

uint64_t HomeVcpuMover::unexpected() const {
  absl::MutexLock lock(&mu_);
  return unexpected_;
}

}  // namespace coalesce
