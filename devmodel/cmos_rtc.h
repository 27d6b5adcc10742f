// The MC146818 real-time clock and its 128 bytes of CMOS RAM at ports 0x70 (index, bit 7 = NMI disable)
// and 0x71 (data). Time comes from the host's wall clock (UTC) plus an offset the guest changes by
// writing the time registers; it is shown in BCD or binary and in 24- or 12-hour form per register B.
// The century is register 0x32 (what QEMU uses and what our FADT names).
//
// UIP (register A bit 7) is set during the last 244 us of every second, and on the first read after an
// update the guest did not see, so both "wait while UIP" and "wait for UIP to rise, then fall" loops
// terminate within about a second however slowly the guest polls. Register C's flags (UF, AF, PF)
// are computed from elapsed time whenever they are looked at; with a TimerService and an IrqSink, the
// enabled ones (UIE, AIE, PIE) also raise IRQ 8, held high until register C is read.
// Simplifications: the divider chain's reset state (register A bits 4-6) stops UIP and the flags but not
// the clock; a write to the day-of-week register is ignored (it is derived from the date).
//
// Lock order: mu_ may be held while calling TimerService::Schedule() and the IrqSink; the timer callback
// takes mu_, so timers are cancelled only after mu_ is released. `timers` and `irq_sink` (either may be
// null: no IRQ 8) must outlive this device.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <limits>
#include <span>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/base/timer_service.h"
#include "hypervisor/bus/bus_device.h"
#include "hypervisor/irq/irq_sink.h"

namespace coalesce {

class CmosRtc final : public BusDevice {
 public:
  static constexpr uint64_t kSize = 2;
  static constexpr uint8_t kCenturyRegister = 0x32;

  CmosRtc(IrqSink* irq_sink, uint32_t irq, TimerService* timers);
  ~CmosRtc() override;
  CmosRtc(const CmosRtc&) = delete;
  CmosRtc& operator=(const CmosRtc&) = delete;

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "cmos-rtc"; }

  // Fills the memory-size bytes as QEMU's PC does: 0x15-0x16 base memory (KiB, at most 640), 0x17-0x18 and
  // 0x30-0x31 memory above 1 MiB (KiB, at most 65535), 0x34-0x35 memory between 16 MiB and 4 GiB (64 KiB
  // units, at most 65535), 0x5b-0x5d memory above 4 GiB (64 KiB units).
  void SetMemorySize(uint64_t below_4g_bytes, uint64_t above_4g_bytes = 0);
  // Any other CMOS byte (index 0x0e-0x7f); time and status registers are ignored here.
  void SetCmosByte(uint8_t index, uint8_t value);
  [[nodiscard]] uint8_t GetCmosByte(uint8_t index) const;
  // Bit 7 of the last index write.
  [[nodiscard]] bool nmi_disabled() const;

 private:
  int64_t GuestNowNs() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::tm GuestTime() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool UpdatesRunning() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t PeriodicHz() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t ReadRegister(uint8_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteRegister(uint8_t index, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteTimeField(uint8_t index, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetGuestTime(const std::tm& time) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t Encode(int value) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int Decode(uint8_t value) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t EncodeHour(int hour) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int DecodeHour(uint8_t value) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AlarmMatches(int64_t guest_second) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets UF/AF/PF for the events since the last look, then IRQF and the IRQ line.
  void UpdateFlags() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateIrq() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the pending timer (returned in *to_cancel for cancelling after mu_ is released) and arms the
  // next one if an enabled interrupt can fire.
  void Reschedule(TimerService::TimerId* to_cancel) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnTimer(uint64_t generation);

  IrqSink* const irq_sink_;
  const uint32_t irq_;
  TimerService* const timers_;

  mutable absl::Mutex mu_;
  std::array<uint8_t, 128> cmos_ ABSL_GUARDED_BY(mu_){};  // RAM, alarms and registers A-D
  uint8_t index_ ABSL_GUARDED_BY(mu_) = 0;
  bool nmi_disabled_ ABSL_GUARDED_BY(mu_) = false;
  int64_t offset_seconds_ ABSL_GUARDED_BY(mu_) = 0;  // guest time = host UTC + offset
  std::time_t frozen_time_ ABSL_GUARDED_BY(mu_) = 0;  // the time being set while register B.SET is 1
  int64_t last_flags_ns_ ABSL_GUARDED_BY(mu_) = 0;    // guest time of the last UpdateFlags()
  // The guest second of the last register A read and whether it showed UIP (see ReadRegister).
  int64_t last_a_second_ ABSL_GUARDED_BY(mu_) = std::numeric_limits<int64_t>::max();
  bool last_a_uip_ ABSL_GUARDED_BY(mu_) = false;
  bool irq_level_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  TimerService::TimerId timer_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce
