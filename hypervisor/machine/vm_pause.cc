#include "hypervisor/machine/vm_pause.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/vcpu/pause_gate.h"

namespace coalesce {

VmPause::VmPause(const std::vector<std::unique_ptr<Vcpu>>& vcpus, RunControl& run_control, TimerService* timers,
                 std::function<std::vector<uint16_t>()> edges, Send send)
    : vcpus_(vcpus), run_control_(run_control), timers_(timers), edges_(std::move(edges)), send_(std::move(send)) {}

absl::StatusOr<VmPause::Result> VmPause::Pause(absl::Duration timeout) {
  absl::MutexLock op(&op_mu_);
  if (paused_) return absl::FailedPreconditionError("the guest is paused already");
  const std::vector<uint16_t> nodes = edges_();
  absl::StatusOr<Result> done = Change(true, nodes, timeout);
  if (!done.ok()) {
    // Not paused everywhere: every node runs again, so the guest is as it was. An edge that does not confirm
    // that may be told again with `resume`.
    resume_unconfirmed_ = !Change(false, nodes, timeout).ok();
    return done.status();
  }
  paused_ = true;
  resume_unconfirmed_ = false;
  absl::MutexLock lock(&mu_);
  paused_view_ = true;
  paused_since_ = absl::Now();
  return done;
}

absl::StatusOr<VmPause::Result> VmPause::Resume(absl::Duration timeout) {
  absl::MutexLock op(&op_mu_);
  // A resume that an edge did not confirm may be asked for again: every node is told to run once more.
  if (!paused_ && !resume_unconfirmed_) return absl::FailedPreconditionError("the guest is not paused");
  // The home runs again whatever an edge answers: a node that does not answer is reported, not waited for.
  paused_ = false;
  {
    absl::MutexLock lock(&mu_);
    paused_view_ = false;
  }
  absl::StatusOr<Result> done = Change(false, edges_(), timeout);
  resume_unconfirmed_ = !done.ok();
  if (!done.ok()) {
    return absl::Status(done.status().code(),
                        absl::StrCat(done.status().message(), " (the home runs; `resume` again asks every node once more)"));
  }
  return done;
}

absl::StatusOr<VmPause::Result> VmPause::Change(bool paused, const std::vector<uint16_t>& nodes,
                                                absl::Duration timeout) {
  const absl::Time start = absl::Now();
  uint64_t token;
  {
    absl::MutexLock lock(&mu_);
    token = ++token_;
    answers_.clear();
  }
  // The edges first, so that every node stops (or goes on) at about the same moment.
  absl::Status sent = absl::OkStatus();
  for (uint16_t node : nodes) {
    if (absl::Status st = send_(node, node_msg::Pause{.token = token, .paused = paused}); !st.ok() && sent.ok()) {
      sent = absl::UnavailableError(absl::StrFormat("node %u: %s", node, st.message()));
    }
  }
  Result result;
  if (paused) {
    absl::StatusOr<uint32_t> held = HoldVcpus(run_control_, vcpus_, timers_, timeout);
    if (!held.ok()) return absl::Status(held.status().code(), absl::StrFormat("home: %s", held.status().message()));
    result.vcpus_home = *held;
  } else {
    result.vcpus_home = ReleaseVcpus(run_control_, vcpus_, timers_);
  }
  if (!sent.ok()) return sent;
  auto all_answered = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return answers_.size() >= nodes.size() || cancelled_;
  };
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&all_answered), timeout - (absl::Now() - start));
  if (cancelled_) return absl::FailedPreconditionError("the VM is stopping");
  for (uint16_t node : nodes) {
    auto it = answers_.find(node);
    if (it == answers_.end()) {
      return absl::DeadlineExceededError(
          absl::StrFormat("node %u did not answer within %s", node, absl::FormatDuration(timeout)));
    }
    if (!it->second.error.empty()) {
      return absl::FailedPreconditionError(absl::StrFormat("node %u: %s", node, it->second.error));
    }
    result.vcpus_edges += it->second.vcpus;
  }
  result.edges = nodes.size();
  result.took = absl::Now() - start;
  return result;
}

bool VmPause::paused() const {
  absl::MutexLock lock(&mu_);
  return paused_view_;
}

absl::Duration VmPause::paused_for() const {
  absl::MutexLock lock(&mu_);
  return paused_view_ ? absl::Now() - paused_since_ : absl::ZeroDuration();
}

void VmPause::OnAnswer(uint16_t from, const node_msg::PauseDone& done) {
  absl::MutexLock lock(&mu_);
  if (done.token != token_ || answers_.count(from) != 0) {
    ++unexpected_;
    LOG_WARN("a pause answer from node %u for request %u, which is not in flight", from, done.token);
    return;
  }
  answers_.emplace(from, done);
}

void VmPause::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

uint64_t VmPause::unexpected() const {
  absl::MutexLock lock(&mu_);
  return unexpected_;
}

}  // namespace coalesce
