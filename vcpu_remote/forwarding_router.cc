#include "vcpu_remote/forwarding_router.h"

#include <algorithm>

namespace coalesce {

ForwardingInterruptRouter::ForwardingInterruptRouter(uint16_t self, std::vector<uint16_t> node_of_apic,
                                                     SendInterrupt send, SendEoi send_eoi)
    : self_(self), node_of_apic_(std::move(node_of_apic)), send_(std::move(send)), send_eoi_(std::move(send_eoi)) {
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
    if (msg.destination >= node_of_apic_.size() || node_of_apic_[msg.destination] == self_) return {};
    return {node_of_apic_[msg.destination]};
  }
  return other_nodes_;
}

void ForwardingInterruptRouter::ForwardToRemote(const ApicMessage& msg) {
  for (uint16_t node : TargetNodes(msg)) send_(node, msg);
}

void ForwardingInterruptRouter::BroadcastEoi(uint8_t vector) {
  if (self_ == 0) {
    LocalInterruptRouter::BroadcastEoi(vector);
  } else if (send_eoi_) {
    send_eoi_(vector);
  }
}

}  // namespace coalesce
