// The InterruptRouter of one node of a coalesced VM: delivers to the APICs of this node and forwards what
// may address APICs elsewhere to the nodes that hold them (a physical destination goes to its one node;
// broadcasts, logical destinations and the all-* shorthands go to every other node, whose routers match them
// against their own APICs). EOIs of level-triggered vectors go to the home node, which owns the IOAPIC.
// Edges know only their own APICs and send everything else to the home, which relays (DeliverFromNode).
//
// Moving a vCPU (issue 12; docs/COALESCENCE.md "Moving a vCPU: interrupts in flight"). The home is the hub
// every cross-node interrupt passes through, so it can make each interrupt reach a moving vCPU exactly once:
//   edge S -> home: the home marks the vCPU in transit (ExpectArrival) as it sends the eviction; what may
//     address it from then on is queued, except what S sends before it detaches the vCPU (S's own copy of the
//     APIC took those); Attach replays the queue onto the restored APIC (matching its real LDR/DFR).
//   home -> edge D: the home detaches the vCPU as it sends the state (Detach); what D sends before it confirms
//     the arrival (ArrivalConfirmed) and may address the vCPU is sent back to D for that APIC alone.
// Each change runs its `then` (the message that announces it) under the migration lock, which every delivery
// holds shared: no interrupt is routed between a change of the map and the message that tells the peer.
//
// Locks: move_mu_ (shared by deliveries, exclusive by moves) -> map_mu_ / queue_mu_ (leaves) -> the base
// router's mu_ and the LocalApic locks it takes. move_mu_ is held while sending node messages.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/irq/local_interrupt_router.h"

namespace coalesce {

class ForwardingInterruptRouter final : public LocalInterruptRouter {
 public:
  using SendInterrupt = std::function<void(uint16_t node, const ApicMessage& msg)>;
  using SendEoi = std::function<void(uint8_t vector)>;
  // Home only: `msg` for APIC `apic_id` alone, on node `node` (it moved there while `msg` was in flight).
  using SendDirected = std::function<void(uint16_t node, uint32_t apic_id, const ApicMessage& msg)>;
  // The node of an APIC whose vCPU is on its way to the home.
  static constexpr uint16_t kInTransit = 0xffff;

  // `node_of_apic[id]` is the node holding APIC `id` (ids >= node_of_apic.size() exist nowhere).
  // `send_eoi` is used on nodes other than the home (node 0) instead of a local IOAPIC.
  ForwardingInterruptRouter(uint16_t self, std::vector<uint16_t> node_of_apic, SendInterrupt send,
                            SendEoi send_eoi, SendDirected send_directed = nullptr);

  void Deliver(const ApicMessage& msg) override;
  void BroadcastEoi(uint8_t vector) override;
  // A message node `from` forwarded here: delivered to this node's APICs; at the home also relayed to the
  // other nodes it may address (never back to `from`). Returns how many nodes it was relayed to.
  size_t DeliverFromNode(uint16_t from, const ApicMessage& msg);
  // A message for APIC `apic_id` alone (SendDirected on the home's side).
  void DeliverDirected(uint32_t apic_id, const ApicMessage& msg);
  // The nodes other than this one that `msg` may address (pure; exposed for tests).
  [[nodiscard]] std::vector<uint16_t> TargetNodes(const ApicMessage& msg) const;
  [[nodiscard]] uint16_t NodeOf(uint32_t apic_id) const;

  // --- Moving vCPUs. `then` runs under the migration lock; its error is returned (the change stays made).
  // The vCPU of APIC `apic_id` leaves this node for `new_node` (its LocalApic is unregistered; the caller
  // saves its state). At the home, arrivals at `new_node` are then watched until ArrivalConfirmed.
  absl::Status Detach(uint32_t apic_id, uint16_t new_node, const std::function<absl::Status()>& then);
  // The vCPU of `apic` now runs here (its state restored): registered, and what was queued while it was in
  // transit is delivered to it if it addresses it.
  absl::Status Attach(LocalApic* apic, const std::function<absl::Status()>& then);
  // Home: the vCPU of APIC `apic_id` on node `source` is asked to come home (`then` sends the eviction; if
  // it fails, nothing changed).
  absl::Status ExpectArrival(uint32_t apic_id, uint16_t source, const std::function<absl::Status()>& then);
  // Home: `source` has detached the vCPU; its later messages no longer reached it there.
  void SourceDetached(uint32_t apic_id);
  // Home: the node the vCPU moved to runs it; its own messages reach it there from now on.
  void ArrivalConfirmed(uint32_t apic_id);
  // Home: node `node` joined the VM (an edge attached while the guest runs); broadcasts reach it from now on.
  void AddNode(uint16_t node);
  // Home: node `node` left the VM (no vCPU runs there); nothing is sent to it any more.
  void RemoveNode(uint16_t node);
  // Interrupts queued for vCPUs in transit and sent back to nodes they had just reached (for tests).
  [[nodiscard]] uint64_t queued_in_transit() const;
  [[nodiscard]] uint64_t sent_directed() const;

 protected:
  [[nodiscard]] bool HasRemoteApics() const override {
    absl::ReaderMutexLock lock(&map_mu_);
    return !other_nodes_.empty();
  }
  void ForwardToRemote(const ApicMessage& msg) override;

 private:
  struct Arrival {
    uint16_t source = 0;
    bool source_detached = false;
    std::vector<ApicMessage> queue;
  };
  // Home, under move_mu_ (shared): keeps what a vCPU in transit must still get, and sends back to a node what
  // it sent before it confirmed a vCPU's arrival.
  void NoteInFlight(uint16_t from, const ApicMessage& msg) ABSL_SHARED_LOCKS_REQUIRED(move_mu_);
  void SetNode(uint32_t apic_id, uint16_t node);

  const uint16_t self_;
  SendInterrupt send_;
  SendEoi send_eoi_;
  SendDirected send_directed_;

  mutable absl::Mutex move_mu_;
  mutable absl::Mutex map_mu_;
  std::vector<uint16_t> node_of_apic_ ABSL_GUARDED_BY(map_mu_);
  std::vector<uint16_t> other_nodes_ ABSL_GUARDED_BY(map_mu_);  // nodes that held a vCPU at start, until they leave
  mutable absl::Mutex queue_mu_;
  std::map<uint32_t, Arrival> arrivals_ ABSL_GUARDED_BY(queue_mu_);
  std::map<uint32_t, uint16_t> departures_ ABSL_GUARDED_BY(queue_mu_);  // APIC id -> node it went to
  uint64_t queued_ ABSL_GUARDED_BY(queue_mu_) = 0;
  uint64_t directed_ ABSL_GUARDED_BY(queue_mu_) = 0;
};

}  // namespace coalesce
