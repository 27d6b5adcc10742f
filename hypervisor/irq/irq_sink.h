// Where a device drives its interrupt line. The machine's implementation feeds the line to the PIC (ISA
// IRQs 0-15) and to the IOAPIC pin of the same GSI, as a PC's wiring does (IRQ0 goes to IOAPIC pin 2).
#pragma once

#include <cstdint>

namespace coalesce {

class IrqSink {
 public:
  virtual ~IrqSink() = default;
  // Sets the level of ISA IRQ / GSI `irq`. Edge-triggered users pulse it (true then false). Any thread.
  virtual void SetIrq(uint32_t irq, bool level) = 0;
};

}  // namespace coalesce
