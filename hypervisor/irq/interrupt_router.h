// The one place where "which vCPU gets this interrupt" is decided. Local APICs (ICR writes), the IOAPIC
// and MSIs hand messages to the router; the router finds the target local APICs. The home-only
// implementation knows every vCPU; a coalesced VM plugs in one that forwards to vCPUs on other nodes.
#pragma once

#include <cstdint>

#include "hypervisor/irq/apic_message.h"

namespace coalesce {

class InterruptRouter {
 public:
  virtual ~InterruptRouter() = default;
  // Delivers `msg` to every local APIC it addresses (lowest-priority picks one). Any thread.
  virtual void Deliver(const ApicMessage& msg) = 0;
  // A local APIC EOIed a level-triggered vector: tell the IOAPIC(s) so they clear remote IRR.
  virtual void BroadcastEoi(uint8_t vector) = 0;
};

}  // namespace coalesce
