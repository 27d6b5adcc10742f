#include "vcpu_remote/forwarding_router.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"

namespace coalesce {

ForwardingInterruptRouter::ForwardingInterruptRouter(uint16_t self, std::vector<uint16_t> node_of_apic,
                                                     SendInterrupt send, SendEoi send_eoi,
                                                     SendDirected send_directed)
    : self_(self),
      send_(std::move(send)),
      send_eoi_(std::move(send_eoi)),
      send_directed_(std::move(send_directed)),
      node_of_apic_(std::move(node_of_apic)) {
  absl::MutexLock lock(&map_mu_);
  for (uint16_t n : node_of_apic_) {
    if (n != self_ && std::find(other_nodes_.begin(), other_nodes_.end(), n) == other_nodes_.end()) {
      other_nodes_.push_back(n);
    }
  }
  std::sort(other_nodes_.begin(), other_nodes_.end());
}

std::vector<uint16_t> ForwardingInterruptRouter::TargetNodes(const ApicMessage& msg) const {
  if (msg.shorthand == DestinationShorthand::kSelf) return {};
  if (msg.shorthand == DestinationShorthand::kNone && msg.destination_mode == DestinationMode::kPhysical &&
      msg.destination != 0xff) {
    absl::ReaderMutexLock lock(&map_mu_);
    if (msg.destination >= node_of_apic_.size()) return {};
    const uint16_t node = node_of_apic_[msg.destination];
    if (node == self_ || node == kInTransit) return {};  // in transit: queued (NoteInFlight)
    return {node};
  }
  absl::ReaderMutexLock lock(&map_mu_);
  return other_nodes_;
}

void ForwardingInterruptRouter::AddNode(uint16_t node) {
  absl::MutexLock lock(&move_mu_);
  absl::MutexLock map(&map_mu_);
  if (node != self_ && std::find(other_nodes_.begin(), other_nodes_.end(), node) == other_nodes_.end()) {
    other_nodes_.push_back(node);
    std::sort(other_nodes_.begin(), other_nodes_.end());
  }
}

void ForwardingInterruptRouter::RemoveNode(uint16_t node) {
  absl::MutexLock lock(&move_mu_);
  absl::MutexLock map(&map_mu_);
  other_nodes_.erase(std::remove(other_nodes_.begin(), other_nodes_.end(), node), other_nodes_.end());
}

uint16_t ForwardingInterruptRouter::NodeOf(uint32_t apic_id) const {
  absl::ReaderMutexLock lock(&map_mu_);
  return apic_id < node_of_apic_.size() ? node_of_apic_[apic_id] : kInTransit;
}

void ForwardingInterruptRouter::SetNode(uint32_t apic_id, uint16_t node) {
  absl::MutexLock lock(&map_mu_);
  if (apic_id < node_of_apic_.size()) node_of_apic_[apic_id] = node;
}

void ForwardingInterruptRouter::ForwardToRemote(const ApicMessage& msg) {
  for (uint16_t node : TargetNodes(msg)) send_(node, msg);
}

void ForwardingInterruptRouter::Deliver(const ApicMessage& msg) {
  absl::ReaderMutexLock lock(&move_mu_);
  LocalInterruptRouter::Deliver(msg);
  NoteInFlight(self_, msg);
}

size_t ForwardingInterruptRouter::DeliverFromNode(uint16_t from, const ApicMessage& msg) {
  absl::ReaderMutexLock lock(&move_mu_);
  DeliverLocally(msg);
  size_t relayed = 0;
  if (self_ == 0) {
    for (uint16_t node : TargetNodes(msg)) {
      if (node == from) continue;
      send_(node, msg);
      ++relayed;
    }
    NoteInFlight(from, msg);
  }
  return relayed;
}

void ForwardingInterruptRouter::DeliverDirected(uint32_t apic_id, const ApicMessage& msg) {
  absl::ReaderMutexLock lock(&move_mu_);
  (void)DeliverToApic(apic_id, msg);
}

void ForwardingInterruptRouter::NoteInFlight(uint16_t from, const ApicMessage& msg) {
  if (self_ != 0) return;
  std::vector<std::pair<uint16_t, uint32_t>> send_back;  // (node, APIC id)
  {
    absl::MutexLock lock(&queue_mu_);
    for (auto& [id, arrival] : arrivals_) {
      if (from == arrival.source && !arrival.source_detached) continue;  // its old APIC took it
      if (!MayAddressApic(msg, id)) continue;
      // Lowest priority went to one APIC already unless it named this one physically.
      if (msg.delivery_mode == DeliveryMode::kLowestPriority &&
          !(msg.shorthand == DestinationShorthand::kNone && msg.destination_mode == DestinationMode::kPhysical &&
            msg.destination == id)) {
        continue;
      }
      arrival.queue.push_back(msg);
      ++queued_;
    }
    for (const auto& [id, node] : departures_) {
      if (from == node && MayAddressApic(msg, id)) send_back.emplace_back(node, id);
    }
    directed_ += send_back.size();
  }
  for (const auto& [node, id] : send_back) {
    if (send_directed_) send_directed_(node, id, msg);
  }
}

void ForwardingInterruptRouter::BroadcastEoi(uint8_t vector) {
  if (self_ == 0) {
    LocalInterruptRouter::BroadcastEoi(vector);
  } else if (send_eoi_) {
    send_eoi_(vector);
  }
}

absl::Status ForwardingInterruptRouter::Detach(uint32_t apic_id, uint16_t new_node,
                                               const std::function<absl::Status()>& then) {
  absl::MutexLock lock(&move_mu_);
  if (absl::Status st = RemoveApic(apic_id); !st.ok()) return st;
  SetNode(apic_id, new_node);
  if (self_ == 0 && new_node != 0) {
    absl::MutexLock q(&queue_mu_);
    departures_[apic_id] = new_node;
  }
  return then ? then() : absl::OkStatus();
}

absl::Status ForwardingInterruptRouter::Attach(LocalApic* apic, const std::function<absl::Status()>& then) {
  absl::MutexLock lock(&move_mu_);
  if (absl::Status st = AddApic(apic); !st.ok()) return st;
  const uint32_t id = apic->apic_id();
  SetNode(id, self_);
  std::vector<ApicMessage> queued;
  {
    absl::MutexLock q(&queue_mu_);
    if (auto it = arrivals_.find(id); it != arrivals_.end()) {
      queued = std::move(it->second.queue);
      arrivals_.erase(it);
    }
    departures_.erase(id);  // a move out that could not be sent
  }
  for (const ApicMessage& msg : queued) (void)DeliverToApic(id, msg);
  return then ? then() : absl::OkStatus();
}

absl::Status ForwardingInterruptRouter::ExpectArrival(uint32_t apic_id, uint16_t source,
                                                      const std::function<absl::Status()>& then) {
  absl::MutexLock lock(&move_mu_);
  if (self_ != 0) return absl::FailedPreconditionError("only the home node gathers a vCPU's interrupts in transit");
  if (NodeOf(apic_id) != source) {
    return absl::FailedPreconditionError(absl::StrFormat("vCPU %u is not on node %u", apic_id, source));
  }
  SetNode(apic_id, kInTransit);
  {
    absl::MutexLock q(&queue_mu_);
    arrivals_[apic_id] = Arrival{source, false, {}};
  }
  absl::Status st = then ? then() : absl::OkStatus();
  if (!st.ok()) {  // the eviction never left: the vCPU stays where it was
    SetNode(apic_id, source);
    absl::MutexLock q(&queue_mu_);
    arrivals_.erase(apic_id);
  }
  return st;
}

void ForwardingInterruptRouter::SourceDetached(uint32_t apic_id) {
  absl::MutexLock lock(&move_mu_);
  absl::MutexLock q(&queue_mu_);
  if (auto it = arrivals_.find(apic_id); it != arrivals_.end()) it->second.source_detached = true;
}

void ForwardingInterruptRouter::ArrivalConfirmed(uint32_t apic_id) {
  absl::MutexLock lock(&move_mu_);
  absl::MutexLock q(&queue_mu_);
  departures_.erase(apic_id);
}

uint64_t ForwardingInterruptRouter::queued_in_transit() const {
  absl::MutexLock q(&queue_mu_);
  return queued_;
}

uint64_t ForwardingInterruptRouter::sent_directed() const {
  absl::MutexLock q(&queue_mu_);
  return directed_;
}

}  // namespace coalesce
