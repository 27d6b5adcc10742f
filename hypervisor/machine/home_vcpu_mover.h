// The home's side of moving vCPUs between nodes of a running coalesced VM (issue 12): `coalesce ctl move`
// and an edge that leaves ask it to move a vCPU; it runs the move through the forwarding router (who gets the
// interrupts in flight) and vcpu_mover (the state), one move at a time, and reports how long the vCPU was
// paused. An edge-to-edge move goes through the home (two moves): the home is the hub of every interrupt.
//
// Threads: Move runs on the caller's thread (the control thread) and waits; OnMessage runs on the DSM
// receiver thread of the sending node. Lock order: move_mu_ (one move at a time) -> the router's locks;
// mu_ is a leaf.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hypervisor/irq/local_apic.h"
#include "hypervisor/vcpu/run_control.h"
#include "hypervisor/vcpu/vcpu.h"
#include "vcpu_remote/forwarding_router.h"
#include "vcpu_remote/node_message.h"

namespace coalesce {

class HomeVcpuMover final {
 public:
  using Send = std::function<absl::Status(uint16_t node, const node_msg::NodeMessage& message)>;

  // `vcpus` and `lapics` hold every vCPU of the guest, indexed by id (those elsewhere idle here); none of
  // them is owned and all must outlive the mover. `nodes` counts the home and the edges now (edges attach).
  HomeVcpuMover(std::vector<std::unique_ptr<Vcpu>>& vcpus, std::vector<std::unique_ptr<LocalApic>>& lapics,
                ForwardingInterruptRouter& router, RunControl& run_control, std::function<size_t()> nodes,
                Send send);

  struct Moved {
    uint16_t from = 0;
    uint16_t to = 0;
    absl::Duration pause;  // from the moment the vCPU stopped running to the moment it runs again
  };
  // Moves vCPU `id` to node `to` (0: the home) and waits until it runs there. InvalidArgument for a vCPU or
  // node that does not exist, the BSP (it carries the PIC's interrupt line) or a vCPU already there. A move
  // that fails half way (the vCPU neither here nor there) stops the VM with the reason.
  absl::StatusOr<Moved> Move(uint32_t id, uint16_t to, absl::Duration timeout);
  // VcpuDetached, VcpuMigrate and VcpuArrived from node `from`. Anything not expected is logged and counted.
  void OnMessage(uint16_t from, const node_msg::NodeMessage& message);
  // Wakes a Move that waits (the VM stops).
  void Cancel();
  [[nodiscard]] uint64_t unexpected() const;

 private:
  absl::StatusOr<absl::Duration> MoveHome(uint32_t id, uint16_t from, absl::Duration timeout);
  absl::StatusOr<absl::Duration> MoveOut(uint32_t id, uint16_t to, absl::Duration timeout);
  void Arrive(uint16_t from, const node_msg::VcpuMigrate& message);
  // Waits until the awaited step is done; the error names `what`.
  absl::Status AwaitDone(absl::Duration timeout, const std::string& what);
  void Finish(absl::Status status);

  std::vector<std::unique_ptr<Vcpu>>& vcpus_;
  std::vector<std::unique_ptr<LocalApic>>& lapics_;
  ForwardingInterruptRouter& router_;
  RunControl& run_control_;
  const std::function<size_t()> nodes_;
  Send send_;

  absl::Mutex move_mu_;
  mutable absl::Mutex mu_;
  // The step a Move waits for: the vCPU `awaiting_` arriving here from `awaiting_from_` (its state) or at
  // `awaiting_from_` (its confirmation).
  std::optional<uint32_t> awaiting_ ABSL_GUARDED_BY(mu_);
  uint16_t awaiting_from_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<absl::Status> done_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point done_at_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t unexpected_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace coalesce
