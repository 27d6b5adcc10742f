// One 8259A programmable interrupt controller: the state machine behind its two ports (ICW1-4 init
// sequence, OCW1 mask, OCW2 EOI/rotation, OCW3 register select / poll / special mask), IRR/ISR/IMR and
// edge/level sensing per input (the ELCR). Not thread-safe and not a device by itself: Pic8259Pair owns
// two of them, wires the slave into the master's IR2 and guards both with one lock.
#pragma once

#include <cstdint>

namespace coalesce {

class Pic8259Chip final {
 public:
  // `elcr_mask`: inputs that may be switched to level mode (on a PC: 0xf8 master, 0xde slave).
  // `is_master`: special fully nested mode ignores the cascade input's in-service bit on the master.
  Pic8259Chip(bool is_master, uint8_t elcr_mask) : is_master_(is_master), elcr_mask_(elcr_mask) {}

  // Drives input line `irq` (0-7). Edge inputs latch IRR on a rising edge; level inputs follow the line.
  void SetInput(unsigned irq, bool level);
  // The input (0-7) this chip would present to the CPU now, or -1: its INTR output is high iff >= 0.
  [[nodiscard]] int HighestRequest() const;
  // INTA for `irq` (a value HighestRequest() returned): sets ISR (unless auto-EOI), consumes an edge.
  void Acknowledge(unsigned irq);
  [[nodiscard]] uint8_t VectorFor(unsigned irq) const { return static_cast<uint8_t>(vector_base_ | (irq & 7)); }

  // Port 0 (command) and port 1 (data).
  void WriteCommand(uint8_t value);
  void WriteData(uint8_t value);
  // Reads port 0: IRR or ISR per OCW3, or, after a poll command, the poll byte (which acknowledges).
  uint8_t ReadCommand();
  [[nodiscard]] uint8_t ReadData() const { return imr_; }

  [[nodiscard]] uint8_t elcr() const { return elcr_; }
  // Inputs switched to level mode take their request from the line at once.
  void WriteElcr(uint8_t value) {
    elcr_ = value & elcr_mask_;
    irr_ = static_cast<uint8_t>((irr_ & ~elcr_) | (lines_ & elcr_));
  }

  // Power-on state (before any ICW): everything cleared, all inputs edge-triggered.
  void Reset();

  [[nodiscard]] uint8_t irr() const { return irr_; }
  [[nodiscard]] uint8_t isr() const { return isr_; }
  [[nodiscard]] uint8_t imr() const { return imr_; }

 private:
  enum class InitStep : uint8_t { kReady, kIcw2, kIcw3, kIcw4 };

  // Priority (0 = highest) of the highest-priority bit in `mask` under the current rotation; 8 if none.
  [[nodiscard]] unsigned PriorityOf(uint8_t mask) const;
  void StartInit(uint8_t icw1);
  void WriteOcw2(uint8_t value);
  void Eoi(unsigned irq) { isr_ &= static_cast<uint8_t>(~(1u << irq)); }

  const bool is_master_;
  const uint8_t elcr_mask_;

  uint8_t irr_ = 0;
  uint8_t isr_ = 0;
  uint8_t imr_ = 0;
  uint8_t elcr_ = 0;
  uint8_t lines_ = 0;          // current input levels, for edge detection
  uint8_t vector_base_ = 0;    // ICW2 & 0xf8
  uint8_t lowest_priority_rotation_ = 0;  // IRn has priority (n - rotation) & 7
  InitStep init_step_ = InitStep::kReady;
  bool expect_icw4_ = false;
  bool single_ = false;
  bool auto_eoi_ = false;
  bool rotate_on_auto_eoi_ = false;
  bool special_fully_nested_ = false;
  bool special_mask_ = false;
  bool read_isr_ = false;
  bool poll_ = false;
};

}  // namespace coalesce
