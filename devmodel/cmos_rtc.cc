#include "devmodel/cmos_rtc.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace coalesce {
namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;
// Guest time stays within [1900-01-01, 2200-01-01) UTC, in seconds since the epoch.
constexpr std::time_t kMinGuestSeconds = -2'208'988'800;
constexpr std::time_t kMaxGuestSeconds = 7'258'118'400 - 1;
// UIP is set this long before each second's update, as on the real part.
constexpr int64_t kUipWindowNs = 244'000;

// Register indices.
constexpr uint8_t kSeconds = 0x00;
constexpr uint8_t kSecondsAlarm = 0x01;
constexpr uint8_t kMinutes = 0x02;
constexpr uint8_t kMinutesAlarm = 0x03;
constexpr uint8_t kHours = 0x04;
constexpr uint8_t kHoursAlarm = 0x05;
constexpr uint8_t kDayOfWeek = 0x06;
constexpr uint8_t kDayOfMonth = 0x07;
constexpr uint8_t kMonth = 0x08;
constexpr uint8_t kYear = 0x09;
constexpr uint8_t kRegA = 0x0a;
constexpr uint8_t kRegB = 0x0b;
constexpr uint8_t kRegC = 0x0c;
constexpr uint8_t kRegD = 0x0d;

constexpr uint8_t kAUip = 0x80;
constexpr uint8_t kADividerMask = 0x70;
constexpr uint8_t kADividerNormal = 0x20;  // 32.768 kHz time base, running
constexpr uint8_t kARateMask = 0x0f;

constexpr uint8_t kBSet = 0x80;
constexpr uint8_t kBPie = 0x40;
constexpr uint8_t kBAie = 0x20;
constexpr uint8_t kBUie = 0x10;
constexpr uint8_t kBBinary = 0x04;
constexpr uint8_t kB24Hour = 0x02;

constexpr uint8_t kCIrqf = 0x80;
constexpr uint8_t kCPf = 0x40;
constexpr uint8_t kCAf = 0x20;
constexpr uint8_t kCUf = 0x10;

constexpr uint8_t kDValidRam = 0x80;

constexpr uint8_t kAlarmDontCare = 0xc0;  // an alarm byte with both top bits set matches anything

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0); }
int64_t FloorMod(int64_t a, int64_t b) { return a - FloorDiv(a, b) * b; }

int64_t HostNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Which periodic-interrupt period `ns` falls in, for a rate of `hz`.
int64_t PeriodIndex(int64_t ns, uint32_t hz) {
  const int64_t sec = FloorDiv(ns, kNsPerSecond);
  const int64_t sub = ns - sec * kNsPerSecond;
  return sec * hz + sub * hz / kNsPerSecond;
}

}  // namespace

CmosRtc::CmosRtc(IrqSink* irq_sink, uint32_t irq, TimerService* timers)
    : irq_sink_(irq_sink), irq_(irq), timers_(timers) {
  absl::MutexLock lock(&mu_);
  cmos_[kRegA] = kADividerNormal | 0x06;  // 1024 Hz periodic rate selected (not enabled), as a BIOS leaves it
  cmos_[kRegB] = kB24Hour;                // BCD, 24-hour
  cmos_[kRegD] = kDValidRam;
  last_flags_ns_ = GuestNowNs();
}

CmosRtc::~CmosRtc() {
  TimerService::TimerId pending = 0;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    pending = timer_id_;
    timer_id_ = 0;
  }
  if (pending != 0) timers_->Cancel(pending);
}

void CmosRtc::Read(uint64_t offset, std::span<uint8_t> data) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    // The index port is write-only.
    data[i] = offset + i == 1 ? ReadRegister(index_) : 0xff;
  }
}

void CmosRtc::Write(uint64_t offset, std::span<const uint8_t> data) {
  TimerService::TimerId to_cancel = 0;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < data.size(); ++i) {
      if (offset + i == 0) {
        index_ = data[i] & 0x7f;
        nmi_disabled_ = data[i] & 0x80;
      } else if (offset + i == 1) {
        WriteRegister(index_, data[i]);
        if (index_ == kRegA || index_ == kRegB) {
          TimerService::TimerId id = 0;
          Reschedule(&id);
          if (id != 0) {
            // Only one can be pending at a time; an earlier one in this access is already stale.
            to_cancel = id;
          }
        }
      }
    }
  }
  if (to_cancel != 0) timers_->Cancel(to_cancel);
}

void CmosRtc::SetMemorySize(uint64_t below_4g_bytes, uint64_t above_4g_bytes) {
  constexpr uint64_t kKiB = 1024;
  constexpr uint64_t kMiB = 1024 * kKiB;
  absl::MutexLock lock(&mu_);
  const auto put16 = [this](uint8_t index, uint64_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    cmos_[index] = static_cast<uint8_t>(value);
    cmos_[index + 1] = static_cast<uint8_t>(value >> 8);
  };
  put16(0x15, std::min<uint64_t>(below_4g_bytes / kKiB, 640));
  const uint64_t extended = below_4g_bytes > kMiB ? std::min<uint64_t>((below_4g_bytes - kMiB) / kKiB, 65535) : 0;
  put16(0x17, extended);
  put16(0x30, extended);
  const uint64_t above_16m =
      below_4g_bytes > 16 * kMiB ? std::min<uint64_t>((below_4g_bytes - 16 * kMiB) / (64 * kKiB), 65535) : 0;
  put16(0x34, above_16m);
  const uint64_t above_4g = std::min<uint64_t>(above_4g_bytes / (64 * kKiB), 0xffffff);
  cmos_[0x5b] = static_cast<uint8_t>(above_4g);
  cmos_[0x5c] = static_cast<uint8_t>(above_4g >> 8);
  cmos_[0x5d] = static_cast<uint8_t>(above_4g >> 16);
}

void CmosRtc::SetCmosByte(uint8_t index, uint8_t value) {
  if (index < 0x0e || index >= cmos_.size() || index == kCenturyRegister) return;
  absl::MutexLock lock(&mu_);
  cmos_[index] = value;
}

uint8_t CmosRtc::GetCmosByte(uint8_t index) const {
  absl::MutexLock lock(&mu_);
  return cmos_[index & 0x7f];
}

bool CmosRtc::nmi_disabled() const {
  absl::MutexLock lock(&mu_);
  return nmi_disabled_;
}

int64_t CmosRtc::GuestNowNs() const { return HostNowNs() + offset_seconds_ * kNsPerSecond; }

std::tm CmosRtc::GuestTime() const {
  const std::time_t seconds =
      (cmos_[kRegB] & kBSet) ? frozen_time_ : static_cast<std::time_t>(FloorDiv(GuestNowNs(), kNsPerSecond));
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return tm;
}

bool CmosRtc::UpdatesRunning() const {
  return !(cmos_[kRegB] & kBSet) && (cmos_[kRegA] & kADividerMask) == kADividerNormal;
}

uint32_t CmosRtc::PeriodicHz() const {
  const unsigned rate = cmos_[kRegA] & kARateMask;
  if (rate == 0 || (cmos_[kRegA] & kADividerMask) != kADividerNormal) return 0;
  // With the 32.768 kHz base, rates 1 and 2 alias 256 Hz and 128 Hz; 3-15 give 8192 Hz down to 2 Hz.
  if (rate <= 2) return rate == 1 ? 256 : 128;
  return 65536u >> rate;
}

uint8_t CmosRtc::Encode(int value) const {
  if (cmos_[kRegB] & kBBinary) return static_cast<uint8_t>(value);
  const int v = std::clamp(value, 0, 99);
  return static_cast<uint8_t>(((v / 10) << 4) | (v % 10));
}

int CmosRtc::Decode(uint8_t value) const {
  if (cmos_[kRegB] & kBBinary) return value;
  return (value >> 4) * 10 + (value & 0x0f);
}

uint8_t CmosRtc::EncodeHour(int hour) const {
  if (cmos_[kRegB] & kB24Hour) return Encode(hour);
  const bool pm = hour >= 12;
  const int h12 = hour % 12 == 0 ? 12 : hour % 12;
  return static_cast<uint8_t>(Encode(h12) | (pm ? 0x80 : 0));
}

int CmosRtc::DecodeHour(uint8_t value) const {
  if (cmos_[kRegB] & kB24Hour) return Decode(value);
  const int h12 = Decode(value & 0x7f) % 12;
  return (value & 0x80) ? h12 + 12 : h12;
}

uint8_t CmosRtc::ReadRegister(uint8_t index) {
  switch (index) {
    case kSeconds:
      return Encode(GuestTime().tm_sec);
    case kMinutes:
      return Encode(GuestTime().tm_min);
    case kHours:
      return EncodeHour(GuestTime().tm_hour);
    case kDayOfWeek:
      return Encode(GuestTime().tm_wday + 1);  // Sunday is 1
    case kDayOfMonth:
      return Encode(GuestTime().tm_mday);
    case kMonth:
      return Encode(GuestTime().tm_mon + 1);
    case kYear:
      return Encode(static_cast<int>(FloorMod(GuestTime().tm_year + 1900, 100)));
    case kCenturyRegister:
      return Encode(static_cast<int>(FloorDiv(GuestTime().tm_year + 1900, 100)));
    case kRegA: {
      uint8_t a = cmos_[kRegA] & 0x7f;
      const int64_t now = GuestNowNs();
      const int64_t second = FloorDiv(now, kNsPerSecond);
      bool uip = UpdatesRunning() && FloorMod(now, kNsPerSecond) >= kNsPerSecond - kUipWindowNs;
      // A guest that polls slower than the 244 us window (a descheduled vCPU, a loaded host) would never
      // see UIP rise; if an update happened since its last look and it did not see UIP then, show it now.
      // The next read shows UIP clear and the new second, which is what a "wait for update" loop wants.
      if (UpdatesRunning() && second > last_a_second_ && !last_a_uip_) uip = true;
      last_a_second_ = second;
      last_a_uip_ = uip;
      if (uip) a |= kAUip;
      return a;
    }
    case kRegC: {
      UpdateFlags();
      const uint8_t c = cmos_[kRegC];
      cmos_[kRegC] = 0;  // reading C acknowledges every flag and drops IRQ 8
      UpdateIrq();
      if (timer_id_ == 0) ScheduleNext();
      return c;
    }
    case kRegD:
      return kDValidRam;
    default:
      return cmos_[index & 0x7f];
  }
}

void CmosRtc::WriteRegister(uint8_t index, uint8_t value) {
  switch (index) {
    case kSeconds:
    case kMinutes:
    case kHours:
    case kDayOfWeek:
    case kDayOfMonth:
    case kMonth:
    case kYear:
    case kCenturyRegister:
      WriteTimeField(index, value);
      return;
    case kRegA:
      UpdateFlags();  // account for events under the old rate first
      cmos_[kRegA] = value & 0x7f;
      return;
    case kRegB: {
      UpdateFlags();
      const uint8_t old = cmos_[kRegB];
      if (value & kBSet) {
        value &= static_cast<uint8_t>(~kBUie);  // setting SET clears UIE, per the data sheet
        if (!(old & kBSet)) frozen_time_ = static_cast<std::time_t>(FloorDiv(GuestNowNs(), kNsPerSecond));
      }
      cmos_[kRegB] = value;
      if ((old & kBSet) && !(value & kBSet)) {
        // The clock restarts from the time the guest set.
        offset_seconds_ = static_cast<int64_t>(frozen_time_) - FloorDiv(HostNowNs(), kNsPerSecond);
        last_flags_ns_ = GuestNowNs();
      }
      UpdateFlags();  // IRQF follows the new enables
      return;
    }
    case kRegC:
    case kRegD:
      return;  // read-only
    default:
      cmos_[index & 0x7f] = value;  // alarms and RAM
      return;
  }
}

void CmosRtc::WriteTimeField(uint8_t index, uint8_t value) {
  std::tm tm = GuestTime();
  const int year = tm.tm_year + 1900;
  switch (index) {
    case kSeconds:
      tm.tm_sec = Decode(value);
      break;
    case kMinutes:
      tm.tm_min = Decode(value);
      break;
    case kHours:
      tm.tm_hour = DecodeHour(value);
      break;
    case kDayOfMonth:
      tm.tm_mday = Decode(value);
      break;
    case kMonth:
      tm.tm_mon = Decode(value) - 1;
      break;
    case kYear:
      tm.tm_year = static_cast<int>(FloorDiv(year, 100)) * 100 + Decode(value) - 1900;
      break;
    case kCenturyRegister:
      tm.tm_year = Decode(value) * 100 + static_cast<int>(FloorMod(year, 100)) - 1900;
      break;
    default:
      return;  // day of week: derived from the date
  }
  SetGuestTime(tm);
}

void CmosRtc::SetGuestTime(const std::tm& time) {
  // timegm normalizes out-of-range fields (a "month 13" rolls into the next year), so any guest value is
  // accepted without error.
  std::tm copy = time;
  copy.tm_isdst = 0;
  // Keep the guest's clock within 1900-2199 (what the century register can name sensibly), so guest time
  // in nanoseconds always fits 64 bits; a garbage century or year is clamped, not trusted.
  const std::time_t seconds = std::clamp<std::time_t>(timegm(&copy), kMinGuestSeconds, kMaxGuestSeconds);
  if (cmos_[kRegB] & kBSet) {
    frozen_time_ = seconds;
    return;
  }
  offset_seconds_ = static_cast<int64_t>(seconds) - FloorDiv(HostNowNs(), kNsPerSecond);
  last_flags_ns_ = GuestNowNs();
}

bool CmosRtc::AlarmMatches(int64_t guest_second) const {
  const auto matches = [this](uint8_t alarm, int64_t actual, bool hours) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if ((alarm & kAlarmDontCare) == kAlarmDontCare) return true;
    return (hours ? DecodeHour(alarm) : Decode(alarm)) == actual;
  };
  return matches(cmos_[kSecondsAlarm], FloorMod(guest_second, 60), false) &&
         matches(cmos_[kMinutesAlarm], FloorMod(FloorDiv(guest_second, 60), 60), false) &&
         matches(cmos_[kHoursAlarm], FloorMod(FloorDiv(guest_second, 3600), 24), true);
}

void CmosRtc::UpdateFlags() {
  const int64_t now = GuestNowNs();
  const int64_t last = last_flags_ns_;
  last_flags_ns_ = now;
  uint8_t c = cmos_[kRegC];
  if (now > last) {
    if (UpdatesRunning()) {
      const int64_t last_second = FloorDiv(last, kNsPerSecond);
      const int64_t this_second = FloorDiv(now, kNsPerSecond);
      if (this_second > last_second) {
        c |= kCUf;
        // Every alarm pattern recurs within a day, so a day of seconds is enough to look at.
        for (int64_t s = std::max(last_second + 1, this_second - 86399); s <= this_second; ++s) {
          if (AlarmMatches(s)) {
            c |= kCAf;
            break;
          }
        }
      }
    }
    if (const uint32_t hz = PeriodicHz(); hz != 0 && PeriodIndex(now, hz) > PeriodIndex(last, hz)) c |= kCPf;
  }
  const uint8_t b = cmos_[kRegB];
  if (((c & kCPf) && (b & kBPie)) || ((c & kCAf) && (b & kBAie)) || ((c & kCUf) && (b & kBUie))) c |= kCIrqf;
  cmos_[kRegC] = c;
  UpdateIrq();
}

void CmosRtc::UpdateIrq() {
  const bool level = cmos_[kRegC] & kCIrqf;
  if (irq_sink_ == nullptr || level == irq_level_) return;
  irq_level_ = level;
  irq_sink_->SetIrq(irq_, level);
}

void CmosRtc::Reschedule(TimerService::TimerId* to_cancel) {
  ++generation_;
  *to_cancel = timer_id_;
  timer_id_ = 0;
  ScheduleNext();
}

void CmosRtc::ScheduleNext() {
  if (stopping_ || timers_ == nullptr || irq_sink_ == nullptr) return;
  // While IRQF is up the line cannot change until the guest reads register C, which re-arms the timer.
  if (cmos_[kRegC] & kCIrqf) return;
  const uint8_t b = cmos_[kRegB];
  const int64_t now = GuestNowNs();
  int64_t next = std::numeric_limits<int64_t>::max();
  if ((b & (kBUie | kBAie)) && UpdatesRunning()) next = (FloorDiv(now, kNsPerSecond) + 1) * kNsPerSecond;
  if (const uint32_t hz = PeriodicHz(); (b & kBPie) && hz != 0) {
    const int64_t period = PeriodIndex(now, hz) + 1;
    const int64_t sec = FloorDiv(period, hz);
    const int64_t rem = period - sec * hz;
    next = std::min(next, sec * kNsPerSecond + (rem * kNsPerSecond + hz - 1) / hz);
  }
  if (next == std::numeric_limits<int64_t>::max()) return;
  const auto deadline = TimerService::Clock::now() + std::chrono::nanoseconds(next - now);
  const uint64_t generation = generation_;
  timer_id_ = timers_->Schedule(deadline, [this, generation] { OnTimer(generation); });
}

void CmosRtc::OnTimer(uint64_t generation) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || generation != generation_) return;
  timer_id_ = 0;
  UpdateFlags();
  ScheduleNext();
}

}  // namespace coalesce
