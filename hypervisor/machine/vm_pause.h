// Pausing the whole guest, on every node (`coalesce ctl suspend` / `resume`, virsh suspend / resume): the home
// asks each edge node still in the VM to hold its vCPUs (node message Pause), holds its own (pause_gate.h) and
// waits for every edge's answer (PauseDone); resuming releases them the same way. A pause that does not
// complete everywhere in time is undone and the error names the node. While paused, vCPUs may still move (they
// wait at their gate wherever they arrive); what needs the guest's answer (CPU hotplug) or a new node (attach)
// is refused by the machine.
//
// Threads: Pause and Resume run on the control thread and wait; OnAnswer runs on the DSM receiver thread of the
// answering node. Lock order: op_mu_ (one pause or resume at a time) -> mu_ (a leaf).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hypervisor/base/timer_service.h"
#include "hypervisor/vcpu/run_control.h"
#include "hypervisor/vcpu/vcpu.h"
#include "vcpu_remote/node_message.h"

namespace coalesce {

class VmPause final {
 public:
  using Send = std::function<absl::Status(uint16_t node, const node_msg::NodeMessage& message)>;

  // `vcpus`: the home's, indexed by id, and `timers`, the home's device timers (may be null); not owned, they
  // outlive this. `edges()`: the edge nodes in the VM now (none for a guest on one node).
  VmPause(const std::vector<std::unique_ptr<Vcpu>>& vcpus, RunControl& run_control, TimerService* timers,
          std::function<std::vector<uint16_t>()> edges, Send send);

  struct Result {
    uint32_t vcpus_home = 0;   // held (or released) at home
    uint32_t vcpus_edges = 0;  // on the edges, from their answers
    size_t edges = 0;          // edge nodes that answered
    absl::Duration took;       // from the request to the last answer
  };
  // FailedPrecondition if the guest is paused already (Pause) or not paused (Resume); DeadlineExceeded or the
  // edge's own error, naming the node, if a node did not do it within `timeout`. A failed pause is undone (the
  // undo waits for the edges too: at most twice `timeout` in all); after a failed resume the home runs, and
  // Resume may be called again to tell every node once more.
  absl::StatusOr<Result> Pause(absl::Duration timeout);
  absl::StatusOr<Result> Resume(absl::Duration timeout);
  [[nodiscard]] bool paused() const;
  // How long the guest has been paused (zero when it runs).
  [[nodiscard]] absl::Duration paused_for() const;
  // An edge's answer. One that answers no request in flight is logged and counted.
  void OnAnswer(uint16_t from, const node_msg::PauseDone& done);
  [[nodiscard]] uint64_t unexpected() const;
  // The VM stops: a pause or resume waiting for answers returns at once.
  void Cancel();

 private:
  // Sends Pause{paused} to `nodes` and changes the home's vCPUs; then waits for every answer.
  absl::StatusOr<Result> Change(bool paused, const std::vector<uint16_t>& nodes, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);

  const std::vector<std::unique_ptr<Vcpu>>& vcpus_;
  RunControl& run_control_;
  TimerService* const timers_;
  const std::function<std::vector<uint16_t>()> edges_;
  const Send send_;

  absl::Mutex op_mu_;
  bool paused_ ABSL_GUARDED_BY(op_mu_) = false;
  bool resume_unconfirmed_ ABSL_GUARDED_BY(op_mu_) = false;  // the last resume missed an edge's answer
  mutable absl::Mutex mu_;
  bool paused_view_ ABSL_GUARDED_BY(mu_) = false;  // paused_, for readers that must not wait for a pause
  absl::Time paused_since_ ABSL_GUARDED_BY(mu_);
  uint64_t token_ ABSL_GUARDED_BY(mu_) = 0;  // of the request in flight
  std::map<uint16_t, node_msg::PauseDone> answers_ ABSL_GUARDED_BY(mu_);
  uint64_t unexpected_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce
