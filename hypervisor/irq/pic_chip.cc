#include "hypervisor/irq/pic_chip.h"

namespace coalesce {
namespace {
constexpr uint8_t Bit(unsigned irq) { return static_cast<uint8_t>(1u << (irq & 7)); }
}  // namespace

void Pic8259Chip::Reset() {
  irr_ = isr_ = imr_ = elcr_ = lines_ = 0;
  vector_base_ = 0;
  lowest_priority_rotation_ = 0;
  init_step_ = InitStep::kReady;
  expect_icw4_ = single_ = auto_eoi_ = rotate_on_auto_eoi_ = false;
  special_fully_nested_ = special_mask_ = read_isr_ = poll_ = false;
}

void Pic8259Chip::SetInput(unsigned irq, bool level) {
  const uint8_t bit = Bit(irq);
  if (elcr_ & bit) {
    // Level mode: the request is the line itself; dropping it withdraws the request.
    irr_ = level ? (irr_ | bit) : (irr_ & ~bit);
  } else if (level && !(lines_ & bit)) {
    irr_ |= bit;  // edge mode: latch the rising edge until INTA
  }
  lines_ = level ? (lines_ | bit) : (lines_ & ~bit);
}

unsigned Pic8259Chip::PriorityOf(uint8_t mask) const {
  if (mask == 0) return 8;
  unsigned priority = 0;
  while (!(mask & Bit(priority + lowest_priority_rotation_))) ++priority;
  return priority;
}

int Pic8259Chip::HighestRequest() const {
  const unsigned request = PriorityOf(irr_ & ~imr_);
  if (request == 8) return -1;
  uint8_t in_service = isr_;
  // Special mask mode lets lower-priority inputs through while a masked one is in service.
  if (special_mask_) in_service &= ~imr_;
  // Special fully nested mode: a higher-priority slave input may interrupt the slave's own service.
  if (special_fully_nested_ && is_master_) in_service &= ~Bit(2);
  if (request >= PriorityOf(in_service)) return -1;
  return static_cast<int>((request + lowest_priority_rotation_) & 7);
}

void Pic8259Chip::Acknowledge(unsigned irq) {
  const uint8_t bit = Bit(irq);
  if (auto_eoi_) {
    if (rotate_on_auto_eoi_) lowest_priority_rotation_ = static_cast<uint8_t>((irq + 1) & 7);
  } else {
    isr_ |= bit;
  }
  if (!(elcr_ & bit)) irr_ &= ~bit;  // a level request stays while the line is high
}

uint8_t Pic8259Chip::ReadCommand() {
  if (poll_) {
    // Poll: the read acts as INTA and returns 0x80 | irq, or 0 when nothing is requested.
    poll_ = false;
    const int irq = HighestRequest();
    if (irq < 0) return 0;
    Acknowledge(static_cast<unsigned>(irq));
    return static_cast<uint8_t>(0x80 | irq);
  }
  return read_isr_ ? isr_ : irr_;
}

void Pic8259Chip::WriteCommand(uint8_t value) {
  if (value & 0x10) {
    StartInit(value);
  } else if (value & 0x08) {
    // OCW3.
    if (value & 0x04) poll_ = true;
    if (value & 0x02) read_isr_ = (value & 0x01) != 0;
    if (value & 0x40) special_mask_ = (value & 0x20) != 0;
  } else {
    WriteOcw2(value);
  }
}

void Pic8259Chip::StartInit(uint8_t icw1) {
  // ICW1 clears the mask and in-service state, resets rotation and OCW3 state, and restarts edge sensing.
  // Level-mode requests still asserted remain requested.
  irr_ &= elcr_;
  isr_ = 0;
  imr_ = 0;
  lowest_priority_rotation_ = 0;
  special_mask_ = read_isr_ = poll_ = false;
  auto_eoi_ = rotate_on_auto_eoi_ = special_fully_nested_ = false;
  expect_icw4_ = (icw1 & 0x01) != 0;
  single_ = (icw1 & 0x02) != 0;
  // ICW1 bit 3 (LTIM, all inputs level) is not used by PC software; the ELCR does that job here.
  init_step_ = InitStep::kIcw2;
}

void Pic8259Chip::WriteOcw2(uint8_t value) {
  const unsigned level = value & 7;
  switch (value >> 5) {
    case 0:  // clear rotate in auto-EOI mode
    case 4:  // set rotate in auto-EOI mode
      rotate_on_auto_eoi_ = (value >> 7) != 0;
      break;
    case 1:    // non-specific EOI
    case 5: {  // rotate on non-specific EOI
      const unsigned priority = PriorityOf(isr_);
      if (priority == 8) break;  // nothing in service
      const unsigned irq = (priority + lowest_priority_rotation_) & 7;
      Eoi(irq);
      if ((value >> 5) == 5) lowest_priority_rotation_ = static_cast<uint8_t>((irq + 1) & 7);
      break;
    }
    case 3:  // specific EOI
      Eoi(level);
      break;
    case 6:  // set priority: IRlevel becomes the lowest
      lowest_priority_rotation_ = static_cast<uint8_t>((level + 1) & 7);
      break;
    case 7:  // rotate on specific EOI
      Eoi(level);
      lowest_priority_rotation_ = static_cast<uint8_t>((level + 1) & 7);
      break;
    default:  // 2: no operation
      break;
  }
}

void Pic8259Chip::WriteData(uint8_t value) {
  switch (init_step_) {
    case InitStep::kReady:
      imr_ = value;  // OCW1
      break;
    case InitStep::kIcw2:
      vector_base_ = value & 0xf8;
      if (!single_) {
        init_step_ = InitStep::kIcw3;
      } else {
        init_step_ = expect_icw4_ ? InitStep::kIcw4 : InitStep::kReady;
      }
      break;
    case InitStep::kIcw3:
      // Cascade wiring is fixed (slave on master IR2); the value only needs to be consumed.
      init_step_ = expect_icw4_ ? InitStep::kIcw4 : InitStep::kReady;
      break;
    case InitStep::kIcw4:
      auto_eoi_ = (value & 0x02) != 0;
      special_fully_nested_ = (value & 0x10) != 0;
      init_step_ = InitStep::kReady;
      break;
  }
}

}  // namespace coalesce
