// A 16550A UART as a PC's COM1 has it (8 ports, ISA IRQ 4), enough for Linux's 8250 driver and for the
// project's tiny guests: divisor latch, 16-byte FIFOs, loopback, modem status, level interrupts.
//
// Transmit is instantaneous: a THR write goes straight to the output sink, so THR/TSR are always empty
// and LSR.THRE/TEMT always read 1. Receive has two sources: bytes from the host (ReceiveBytes, queued up
// to kHostQueueCapacity, so a paste survives while the guest drains the 16-byte window) and, in loopback
// mode, the guest's own transmitted bytes (bounded by the real FIFO depth, so a 17th byte overruns).
//
// Interrupt line: level. It follows the highest-priority pending condition (line status > received data
// or character timeout > THR empty > modem status), gated by MCR.OUT2 as a PC's interrupt buffer is.
//
// Lock order: mu_ is held while calling the IrqSink and the output sink; neither may call back into
// this device.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/bus/bus_device.h"
#include "hypervisor/irq/irq_sink.h"

namespace coalesce {

class Uart16550 final : public BusDevice {
 public:
  static constexpr uint64_t kSize = 8;
  static constexpr size_t kFifoDepth = 16;
  static constexpr size_t kHostQueueCapacity = 4096;

  using OutputSink = std::function<void(uint8_t)>;

  // `irq_sink` must outlive the device. `output` receives every transmitted byte (not in loopback).
  Uart16550(IrqSink* irq_sink, uint32_t irq, OutputSink output);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "uart16550"; }

  // Host input (any thread). Bytes beyond the queue's capacity are dropped and set LSR.OE.
  void ReceiveBytes(std::span<const uint8_t> bytes);

  // Counters for diagnostics.
  [[nodiscard]] uint64_t dropped_input_bytes() const;

 private:
  uint8_t ReadRegister(uint64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteRegister(uint64_t offset, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Transmit(uint8_t byte) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteFcr(uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteMcr(uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Modem status lines (MSR bits 4-7) as the guest sees them now.
  uint8_t ModemLines() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The interrupt identification (IIR bits 0-3) for the highest-priority pending condition.
  uint8_t PendingInterrupt() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool RxTriggerReached() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recomputes the line level and drives the IrqSink if it changed.
  void UpdateIrq() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  IrqSink* const irq_sink_;
  const uint32_t irq_;
  const OutputSink output_;

  mutable absl::Mutex mu_;
  std::deque<uint8_t> rx_ ABSL_GUARDED_BY(mu_);
  uint8_t ier_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t fcr_ ABSL_GUARDED_BY(mu_) = 0;  // only the enable and trigger bits are kept
  uint8_t lcr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t mcr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t lsr_errors_ ABSL_GUARDED_BY(mu_) = 0;  // OE/PE/FE/BI, cleared by reading LSR
  uint8_t msr_deltas_ ABSL_GUARDED_BY(mu_) = 0;  // MSR bits 0-3, cleared by reading MSR
  uint8_t scr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t dll_ ABSL_GUARDED_BY(mu_) = 0x0c;  // 9600 baud, as after a BIOS
  uint8_t dlm_ ABSL_GUARDED_BY(mu_) = 0;
  // THR-empty interrupt latch: set when THR becomes empty (or IER.ETBEI is enabled while it is), cleared
  // by reading IIR while it is the reported source or by writing THR, as on the real part.
  bool thre_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool irq_level_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t dropped_input_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace coalesce
