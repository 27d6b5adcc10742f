// The InterruptRouter of one node of a coalesced VM: delivers to the APICs of this node and forwards what
// may address APICs elsewhere to the nodes that hold them (a physical destination goes to its one node;
// broadcasts, logical destinations and the all-* shorthands go to every other node, whose routers match them
// against their own APICs). EOIs of level-triggered vectors go to the home node, which owns the IOAPIC.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "hypervisor/irq/local_interrupt_router.h"

namespace coalesce {

class ForwardingInterruptRouter final : public LocalInterruptRouter {
 public:
  using SendInterrupt = std::function<void(uint16_t node, const ApicMessage& msg)>;
  using SendEoi = std::function<void(uint8_t vector)>;

  // `node_of_apic[id]` is the node holding APIC `id` (ids >= node_of_apic.size() exist nowhere).
  // `send_eoi` is used on nodes other than the home (node 0) instead of a local IOAPIC.
  ForwardingInterruptRouter(uint16_t self, std::vector<uint16_t> node_of_apic, SendInterrupt send,
                            SendEoi send_eoi);

  void BroadcastEoi(uint8_t vector) override;
  // The nodes other than this one that `msg` may address (pure; exposed for tests).
  [[nodiscard]] std::vector<uint16_t> TargetNodes(const ApicMessage& msg) const;

 protected:
  [[nodiscard]] bool HasRemoteApics() const override { return !other_nodes_.empty(); }
  void ForwardToRemote(const ApicMessage& msg) override;

 private:
  const uint16_t self_;
  const std::vector<uint16_t> node_of_apic_;
  std::vector<uint16_t> other_nodes_;
  SendInterrupt send_;
  SendEoi send_eoi_;
};

}  // namespace coalesce
