// The PC's interrupt wiring as an IrqSink: ISA IRQ n (0-15) drives PIC input n and IOAPIC pin n, except
// IRQ0 (the PIT), which reaches IOAPIC pin 2 (the MADT declares that override); GSIs 16-23 exist on the
// IOAPIC only. Whichever controller the guest unmasked delivers; the other one has the input masked.
// Stateless; thread safety and lock order are those of the PIC and the IOAPIC (it holds no lock).
#pragma once

#include <cstdint>

#include "hypervisor/irq/io_apic.h"
#include "hypervisor/irq/irq_sink.h"
#include "hypervisor/irq/pic.h"

namespace coalesce {

class LegacyIrqWiring final : public IrqSink {
 public:
  // Either controller may be null (a machine without a PIC, say). Not owned.
  LegacyIrqWiring(Pic8259Pair* pic, IoApic* ioapic) : pic_(pic), ioapic_(ioapic) {}

  void SetIrq(uint32_t irq, bool level) override;

  // The IOAPIC pin ISA IRQ / GSI `irq` arrives at.
  static uint32_t GsiOf(uint32_t irq) { return irq == 0 ? 2 : irq; }

 private:
  Pic8259Pair* const pic_;
  IoApic* const ioapic_;
};

}  // namespace coalesce
