// The 8254 programmable interval timer at ports 0x40-0x43, counting at the real 1.193182 MHz against the
// steady clock. Counter values are computed from elapsed time when read, so nothing runs while a guest
// only polls. Channel 0 drives ISA IRQ 0: its expiries (modes 0 and 4 one-shot, modes 2 and 3 periodic)
// are scheduled on the TimerService and delivered as a pulse on the IrqSink (the PIC and IOAPIC pin both
// treat IRQ 0 as edge-triggered, and a pulse is the output's rising edge). Channel 2's gate and output
// are wired to port 0x61 (SystemControlPortB) through SetChannel2Gate()/Channel2Output(), which is what
// Linux's PIT-based TSC calibration polls. Channel 1 counts but drives nothing.
//
// Supported: modes 0-5, binary and BCD counting, LSB/MSB/LSB-then-MSB access, counter latch and
// read-back commands, gate semantics per mode. Simplifications: a new count always takes effect at once
// (the real part waits for the end of the current period in modes 2 and 3), and periodic IRQs are
// rate-limited to one per kMinIrqInterval, so a guest programming a tiny period cannot flood the timer
// thread (the counter itself still runs at full rate).
//
// Lock order: mu_ may be held while calling TimerService::Schedule() and the IrqSink; the timer callback
// takes mu_, so timers are cancelled only after mu_ is released (stale callbacks also check a generation).
// `timers` and `irq_sink` must outlive this device.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/base/timer_service.h"
#include "hypervisor/bus/bus_device.h"
#include "hypervisor/irq/irq_sink.h"

namespace coalesce {

class Pit8254 final : public BusDevice {
 public:
  static constexpr uint64_t kSize = 4;
  static constexpr uint64_t kFrequencyHz = 1'193'182;
  static constexpr std::chrono::microseconds kMinIrqInterval{100};

  using Clock = std::chrono::steady_clock;

  Pit8254(IrqSink* irq_sink, uint32_t irq, TimerService* timers);
  ~Pit8254() override;
  Pit8254(const Pit8254&) = delete;
  Pit8254& operator=(const Pit8254&) = delete;

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "pit8254"; }

  // Port 0x61 wiring.
  void SetChannel2Gate(bool high);
  [[nodiscard]] bool Channel2Output();

  // IRQ 0 pulses delivered so far (diagnostics and tests).
  [[nodiscard]] uint64_t irq_pulses() const;

 private:
  struct Channel {
    uint8_t mode = 3;
    uint8_t access = 3;  // 1: LSB only, 2: MSB only, 3: LSB then MSB
    bool bcd = false;
    bool gate = true;
    uint32_t reload = 0x10000;  // the count as a number of ticks (a written 0 means 65536 or 10000)
    bool loaded = false;        // a count was written since the last control word
    bool triggered = false;     // modes 1 and 5: a gate rising edge started the count
    bool paused = false;        // not counting: gate low (modes 0, 2, 3, 4)
    Clock::time_point start{};  // when the current run of counting began
    uint64_t base_ticks = 0;    // ticks counted before `start` (kept across a mode 0/4 gate pause)
    uint16_t frozen_count = 0;  // shown while no count is loaded or a one-shot is untriggered
    bool null_count = true;
    // Write side: LSB-then-MSB state.
    bool write_msb_next = false;
    uint8_t write_lsb = 0;
    // Read side.
    bool read_msb_next = false;
    bool count_latched = false;
    bool latch_msb_next = false;
    uint16_t latched_count = 0;
    bool status_latched = false;
    uint8_t latched_status = 0;
  };
  struct Snapshot {
    uint32_t count;  // in ticks (0..65536)
    bool out;
  };

  uint8_t ReadChannel(Channel& ch, Clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteChannel(int index, uint8_t value, Clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteControl(uint8_t value, Clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LoadCount(int index, uint32_t written, Clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetGate(int index, bool high, Clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static Snapshot Observe(const Channel& ch, Clock::time_point now);
  static uint64_t ElapsedTicks(const Channel& ch, Clock::time_point now);
  static uint16_t EncodeCount(const Channel& ch, uint32_t ticks);
  static uint8_t StatusByte(const Channel& ch, Clock::time_point now);

  // Channel 0's next IRQ. Reschedule() drops the pending timer (returned through *to_cancel, to be
  // cancelled once mu_ is released) and schedules the next expiry, if any.
  void Reschedule(Clock::time_point now, TimerService::TimerId* to_cancel) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleNext(Clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnChannel0Timer(uint64_t generation);

  IrqSink* const irq_sink_;
  const uint32_t irq_;
  TimerService* const timers_;

  mutable absl::Mutex mu_;
  std::array<Channel, 3> channels_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  TimerService::TimerId timer_id_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point last_irq_ ABSL_GUARDED_BY(mu_){};
  uint64_t irq_pulses_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce
