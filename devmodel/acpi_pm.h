// ACPI fixed hardware as our FADT declares it, one contiguous port block starting at
// platform::kAcpiPm1aEventPort:
//   +0  PM1a_STS (16-bit, write 1 to clear)   +2 PM1a_EN (16-bit)
//   +4  PM1a_CNT (16-bit: SCI_EN reads 1, SLP_TYP bits 10-12, SLP_EN bit 13)
//   +8  PM_TMR (32-bit read, 24-bit 3.579545 MHz free-running counter from the steady clock)
// The SCI (platform::kAcpiSciIrq, level, active high) is high while any status bit is set with its enable
// bit. A write of SLP_EN with SLP_TYP == platform::kAcpiS5SleepType calls on_poweroff; other sleep types
// are not supported and "wake" at once (WAK_STS set), so a guest's wait loop ends. PressPowerButton() is
// how the VMM asks the guest to shut down cleanly. TMR_STS (the counter's bit 23 toggled) is kept from
// elapsed time; with a TimerService it also raises the SCI when TMR_EN is set.
//
// Lock order: mu_ may be held while calling the IrqSink and TimerService::Schedule(); callbacks run with
// no lock held. `irq_sink` and `timers` (may be null) must outlive this device.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/base/timer_service.h"
#include "hypervisor/bus/bus_device.h"
#include "hypervisor/irq/irq_sink.h"

namespace coalesce {

class AcpiPm final : public BusDevice {
 public:
  static constexpr uint64_t kStatusOffset = 0;
  static constexpr uint64_t kEnableOffset = 2;
  static constexpr uint64_t kControlOffset = platform::kAcpiPm1aControlPort - platform::kAcpiPm1aEventPort;
  static constexpr uint64_t kTimerOffset = platform::kAcpiPmTimerPort - platform::kAcpiPm1aEventPort;
  static constexpr uint64_t kSize = kTimerOffset + 4;
  static_assert(kControlOffset == 4 && kTimerOffset == 8, "the PM1a blocks and the PM timer must be contiguous");

  static constexpr uint64_t kTimerHz = 3'579'545;
  static constexpr uint32_t kTimerMask = 0x00ff'ffff;

  // PM1 status / enable bits.
  static constexpr uint16_t kTimerStatus = 1u << 0;
  static constexpr uint16_t kGlobalStatus = 1u << 5;
  static constexpr uint16_t kPowerButtonStatus = 1u << 8;
  static constexpr uint16_t kSleepButtonStatus = 1u << 9;
  static constexpr uint16_t kRtcStatus = 1u << 10;
  static constexpr uint16_t kWakeStatus = 1u << 15;
  // PM1 control bits.
  static constexpr uint16_t kSciEnable = 1u << 0;
  static constexpr uint16_t kSleepTypeShift = 10;
  static constexpr uint16_t kSleepTypeMask = 7u << kSleepTypeShift;
  static constexpr uint16_t kSleepEnable = 1u << 13;

  using Callback = std::function<void()>;

  // `on_poweroff` runs on the writing vCPU's thread with no device lock held; it should request the
  // machine's stop and return.
  AcpiPm(IrqSink* irq_sink, uint32_t sci_irq, TimerService* timers, Callback on_poweroff);
  ~AcpiPm() override;
  AcpiPm(const AcpiPm&) = delete;
  AcpiPm& operator=(const AcpiPm&) = delete;

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "acpi-pm"; }

  // Sets PWRBTN_STS (SCI if the guest enabled PWRBTN_EN). Any thread.
  void PressPowerButton();
  // The PM timer's current 24-bit value.
  [[nodiscard]] uint32_t TimerValue() const;

 private:
  uint64_t TimerTicks() const;
  uint8_t ReadByte(uint64_t offset, uint32_t timer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns true if the write asks for S5.
  bool WriteByte(uint64_t offset, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Folds bit-23 toggles of the counter since the last look into TMR_STS.
  void RefreshTimerStatus() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateSci() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleTimerOverflow() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnTimerOverflow(uint64_t generation);

  IrqSink* const irq_sink_;
  const uint32_t sci_irq_;
  TimerService* const timers_;
  const Callback on_poweroff_;
  const std::chrono::steady_clock::time_point epoch_;

  mutable absl::Mutex mu_;
  uint16_t status_ ABSL_GUARDED_BY(mu_) = 0;
  uint16_t enable_ ABSL_GUARDED_BY(mu_) = 0;
  uint16_t control_ ABSL_GUARDED_BY(mu_) = kSciEnable;
  uint64_t timer_epochs_seen_ ABSL_GUARDED_BY(mu_) = 0;  // TimerTicks() >> 23 at the last look
  bool sci_level_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  TimerService::TimerId timer_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t unsupported_sleeps_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace coalesce
