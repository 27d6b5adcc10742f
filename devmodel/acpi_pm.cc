#include "devmodel/acpi_pm.h"

#include "hypervisor/base/log.h"

namespace coalesce {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000ULL;
constexpr unsigned kTimerStatusShift = 23;  // TMR_STS is set whenever the counter's bit 23 changes
// Status bits that can raise the SCI, each with the enable bit at the same position.
constexpr uint16_t kSciSources = AcpiPm::kTimerStatus | AcpiPm::kGlobalStatus | AcpiPm::kPowerButtonStatus |
                                 AcpiPm::kSleepButtonStatus | AcpiPm::kRtcStatus;
// PM1_CNT bits that read back: SCI_EN is forced to 1; BM_RLD (1) and SLP_TYP are kept; GBL_RLS (2) and
// SLP_EN are write-only.
constexpr uint16_t kControlReadable = 0x0002 | AcpiPm::kSleepTypeMask;

uint64_t TicksIn(std::chrono::nanoseconds elapsed) {
  if (elapsed.count() <= 0) return 0;
  const uint64_t ns = static_cast<uint64_t>(elapsed.count());
  return (ns / kNsPerSecond) * AcpiPm::kTimerHz + (ns % kNsPerSecond) * AcpiPm::kTimerHz / kNsPerSecond;
}

std::chrono::nanoseconds DurationOf(uint64_t ticks) {
  const uint64_t f = AcpiPm::kTimerHz;
  return std::chrono::nanoseconds(
      static_cast<int64_t>((ticks / f) * kNsPerSecond + ((ticks % f) * kNsPerSecond + f - 1) / f));
}

}  // namespace

AcpiPm::AcpiPm(IrqSink* irq_sink, uint32_t sci_irq, TimerService* timers, Callback on_poweroff)
    : irq_sink_(irq_sink),
      sci_irq_(sci_irq),
      timers_(timers),
      on_poweroff_(std::move(on_poweroff)),
      epoch_(std::chrono::steady_clock::now()) {}

AcpiPm::~AcpiPm() {
  TimerService::TimerId pending = 0;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    pending = timer_id_;
    timer_id_ = 0;
  }
  if (pending != 0) timers_->Cancel(pending);
}

uint64_t AcpiPm::TimerTicks() const { return TicksIn(std::chrono::steady_clock::now() - epoch_); }

uint32_t AcpiPm::TimerValue() const { return static_cast<uint32_t>(TimerTicks() & kTimerMask); }

void AcpiPm::Read(uint64_t offset, std::span<uint8_t> data) {
  // One counter sample per access, so a 32-bit read is self-consistent.
  const uint32_t timer = TimerValue();
  absl::MutexLock lock(&mu_);
  RefreshTimerStatus();
  for (size_t i = 0; i < data.size(); ++i) data[i] = ReadByte(offset + i, timer);
  UpdateSci();
}

void AcpiPm::Write(uint64_t offset, std::span<const uint8_t> data) {
  bool poweroff = false;
  TimerService::TimerId to_cancel = 0;
  {
    absl::MutexLock lock(&mu_);
    RefreshTimerStatus();
    const uint16_t old_enable = enable_;
    for (size_t i = 0; i < data.size(); ++i) poweroff |= WriteByte(offset + i, data[i]);
    if ((old_enable ^ enable_) & kTimerStatus) {
      ++generation_;
      to_cancel = timer_id_;
      timer_id_ = 0;
      ScheduleTimerOverflow();
    }
    UpdateSci();
  }
  if (to_cancel != 0) timers_->Cancel(to_cancel);
  if (poweroff) {
    LOG_INFO("acpi-pm: guest entered S5 (soft off)");
    if (on_poweroff_) on_poweroff_();
  }
}

void AcpiPm::PressPowerButton() {
  absl::MutexLock lock(&mu_);
  status_ |= kPowerButtonStatus;
  UpdateSci();
}

uint8_t AcpiPm::ReadByte(uint64_t offset, uint32_t timer) {
  const auto byte_of = [](uint64_t value, uint64_t index) { return static_cast<uint8_t>(value >> (8 * index)); };
  if (offset < kEnableOffset) return byte_of(status_, offset - kStatusOffset);
  if (offset < kControlOffset) return byte_of(enable_, offset - kEnableOffset);
  if (offset < kControlOffset + 2) {
    return byte_of((control_ & kControlReadable) | kSciEnable, offset - kControlOffset);
  }
  if (offset >= kTimerOffset && offset < kSize) return byte_of(timer, offset - kTimerOffset);
  return 0xff;
}

bool AcpiPm::WriteByte(uint64_t offset, uint8_t value) {
  if (offset < kEnableOffset) {
    // Write 1 to clear.
    status_ &= static_cast<uint16_t>(~(static_cast<uint16_t>(value) << (8 * (offset - kStatusOffset))));
    return false;
  }
  if (offset < kControlOffset) {
    const unsigned shift = 8 * static_cast<unsigned>(offset - kEnableOffset);
    enable_ = static_cast<uint16_t>((enable_ & ~(0xffu << shift)) | (static_cast<unsigned>(value) << shift));
    return false;
  }
  if (offset < kControlOffset + 2) {
    const unsigned shift = 8 * static_cast<unsigned>(offset - kControlOffset);
    control_ = static_cast<uint16_t>((control_ & ~(0xffu << shift)) | (static_cast<unsigned>(value) << shift));
    if (!(control_ & kSleepEnable)) return false;
    control_ &= static_cast<uint16_t>(~kSleepEnable);  // SLP_EN is write-only
    const unsigned sleep_type = (control_ & kSleepTypeMask) >> kSleepTypeShift;
    if (sleep_type == platform::kAcpiS5SleepType) return true;
    // Sleep states other than S5 are not offered; wake at once so the guest's WAK_STS wait ends.
    if (unsupported_sleeps_++ == 0) LOG_WARN("acpi-pm: ignoring unsupported sleep type %u", sleep_type);
    status_ |= kWakeStatus;
    return false;
  }
  return false;  // the PM timer and the gap are read-only
}

void AcpiPm::RefreshTimerStatus() {
  const uint64_t epochs = TimerTicks() >> kTimerStatusShift;
  if (epochs != timer_epochs_seen_) {
    timer_epochs_seen_ = epochs;
    status_ |= kTimerStatus;
  }
}

void AcpiPm::UpdateSci() {
  const bool level = (status_ & enable_ & kSciSources) != 0;
  if (level == sci_level_) return;
  sci_level_ = level;
  irq_sink_->SetIrq(sci_irq_, level);
}

void AcpiPm::ScheduleTimerOverflow() {
  if (stopping_ || timers_ == nullptr || !(enable_ & kTimerStatus)) return;
  const uint64_t next_toggle = ((TimerTicks() >> kTimerStatusShift) + 1) << kTimerStatusShift;
  const uint64_t generation = generation_;
  timer_id_ = timers_->Schedule(epoch_ + DurationOf(next_toggle), [this, generation] { OnTimerOverflow(generation); });
}

void AcpiPm::OnTimerOverflow(uint64_t generation) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || generation != generation_) return;
  timer_id_ = 0;
  RefreshTimerStatus();
  UpdateSci();
  ScheduleTimerOverflow();
}

}  // namespace coalesce
