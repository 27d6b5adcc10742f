#include "hypervisor/irq/legacy_irq_wiring.h"

namespace coalesce {

void LegacyIrqWiring::SetIrq(uint32_t irq, bool level) {
  // IRQ2 is the PIC cascade; a device never drives it (the PIC ignores it, the IOAPIC pin 2 is IRQ0's).
  if (pic_ != nullptr && irq < 16 && irq != 2) pic_->SetIrq(irq, level);
  if (ioapic_ != nullptr && irq != 2) ioapic_->SetPin(GsiOf(irq), level);
}

}  // namespace coalesce
