// The PC's interrupt wiring: an ISA IRQ line drives both the PIC input of the same number and the IOAPIC
// pin of the same GSI (IRQ0 -> pin 2, as the MADT's interrupt source override says).
#pragma once

#include "hypervisor/irq/io_apic.h"
#include "hypervisor/irq/irq_sink.h"
#include "hypervisor/irq/pic.h"

namespace coalesce {

class PlatformIrqSink final : public IrqSink {
 public:
  PlatformIrqSink(Pic8259Pair* pic, IoApic* ioapic) : pic_(pic), ioapic_(ioapic) {}
  void SetIrq(uint32_t irq, bool level) override {
    if (irq < 16) pic_->SetIrq(irq, level);
    ioapic_->SetPin(irq == 0 ? 2 : irq, level);
  }

 private:
  Pic8259Pair* pic_;
  IoApic* ioapic_;
};

}  // namespace coalesce
