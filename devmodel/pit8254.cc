#include "devmodel/pit8254.h"

#include <algorithm>
#include <vector>

namespace coalesce {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000ULL;
constexpr uint64_t kControlPort = 3;

// floor(ns * F / 1e9) without overflowing 64 bits.
uint64_t TicksIn(std::chrono::nanoseconds elapsed) {
  if (elapsed.count() <= 0) return 0;
  const uint64_t ns = static_cast<uint64_t>(elapsed.count());
  return (ns / kNsPerSecond) * Pit8254::kFrequencyHz + (ns % kNsPerSecond) * Pit8254::kFrequencyHz / kNsPerSecond;
}

// ceil(ticks * 1e9 / F): the first instant at which `ticks` whole ticks have elapsed.
std::chrono::nanoseconds DurationOf(uint64_t ticks) {
  const uint64_t f = Pit8254::kFrequencyHz;
  const uint64_t ns = (ticks / f) * kNsPerSecond + ((ticks % f) * kNsPerSecond + f - 1) / f;
  return std::chrono::nanoseconds(static_cast<int64_t>(ns));
}

uint32_t Modulus(bool bcd) { return bcd ? 10000 : 65536; }

// A written count register value as a number of ticks: 0 stands for the modulus.
uint32_t DecodeCount(uint16_t written, bool bcd) {
  uint32_t value = written;
  if (bcd) {
    value = 0;
    for (int digit = 3; digit >= 0; --digit) {
      // A nibble above 9 is not BCD; clamp it rather than count past the modulus.
      value = value * 10 + std::min<uint32_t>((written >> (4 * digit)) & 0xf, 9);
    }
  }
  return value == 0 ? Modulus(bcd) : value;
}

}  // namespace

Pit8254::Pit8254(IrqSink* irq_sink, uint32_t irq, TimerService* timers)
    : irq_sink_(irq_sink), irq_(irq), timers_(timers) {
  // As after a PC BIOS (and QEMU's reset): every channel in mode 3 with the full count; channel 2's gate
  // is low until port 0x61 raises it, so only channels 0 and 1 run.
  absl::MutexLock lock(&mu_);
  const Clock::time_point now = Clock::now();
  for (size_t i = 0; i < channels_.size(); ++i) {
    channels_[i].gate = (i != 2);
    LoadCount(static_cast<int>(i), 0, now);
  }
  ScheduleNext(now);
}

Pit8254::~Pit8254() {
  TimerService::TimerId pending = 0;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    pending = timer_id_;
    timer_id_ = 0;
  }
  // A callback running now sees stopping_ and schedules nothing more; Cancel waits for it.
  if (pending != 0) timers_->Cancel(pending);
}

void Pit8254::Read(uint64_t offset, std::span<uint8_t> data) {
  absl::MutexLock lock(&mu_);
  const Clock::time_point now = Clock::now();
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t port = offset + i;
    if (port < channels_.size()) {
      data[i] = ReadChannel(channels_[port], now);
    } else {
      data[i] = 0;  // the control word register is write-only
    }
  }
}

void Pit8254::Write(uint64_t offset, std::span<const uint8_t> data) {
  std::vector<TimerService::TimerId> to_cancel;
  {
    absl::MutexLock lock(&mu_);
    const Clock::time_point now = Clock::now();
    for (size_t i = 0; i < data.size(); ++i) {
      const uint64_t port = offset + i;
      if (port == kControlPort) {
        const bool affects_channel0 = (data[i] >> 6) == 0 && ((data[i] >> 4) & 3) != 0;
        WriteControl(data[i], now);
        if (affects_channel0) {
          TimerService::TimerId id = 0;
          Reschedule(now, &id);
          if (id != 0) to_cancel.push_back(id);
        }
      } else if (port < channels_.size()) {
        WriteChannel(static_cast<int>(port), data[i], now);
        if (port == 0) {
          TimerService::TimerId id = 0;
          Reschedule(now, &id);
          if (id != 0) to_cancel.push_back(id);
        }
      }
    }
  }
  // Outside mu_: Cancel waits for a running callback, which takes mu_.
  for (TimerService::TimerId id : to_cancel) timers_->Cancel(id);
}

void Pit8254::SetChannel2Gate(bool high) {
  absl::MutexLock lock(&mu_);
  SetGate(2, high, Clock::now());
}

bool Pit8254::Channel2Output() {
  absl::MutexLock lock(&mu_);
  return Observe(channels_[2], Clock::now()).out;
}

uint64_t Pit8254::irq_pulses() const {
  absl::MutexLock lock(&mu_);
  return irq_pulses_;
}

uint64_t Pit8254::ElapsedTicks(const Channel& ch, Clock::time_point now) {
  return ch.base_ticks + (ch.paused ? 0 : TicksIn(now - ch.start));
}

Pit8254::Snapshot Pit8254::Observe(const Channel& ch, Clock::time_point now) {
  // Before a count is loaded after a control word, OUT sits at the mode's initial level.
  if (!ch.loaded) return {ch.frozen_count, ch.mode != 0};
  const uint64_t n = ch.reload;
  const uint64_t modulus = Modulus(ch.bcd);
  if ((ch.mode == 1 || ch.mode == 5) && !ch.triggered) return {ch.frozen_count, true};
  const uint64_t d = ElapsedTicks(ch, now);
  // The down-counter wraps through the modulus after reaching zero (modes 0, 1, 4, 5).
  const uint32_t wrapped = static_cast<uint32_t>((n + modulus - d % modulus) % modulus);
  switch (ch.mode) {
    case 0:
    case 1:
      return {wrapped, d >= n};
    case 2: {
      // Counts N..1; OUT is low for the one tick at 1, then the count reloads.
      const uint64_t phase = d % n;
      const bool out = ch.paused || n < 2 || phase != n - 1;
      return {static_cast<uint32_t>(n - phase), out};
    }
    case 3: {
      // High for ceil(N/2) ticks, low for floor(N/2); the counter steps by two through each half.
      const uint64_t phase = d % n;
      const uint64_t high_ticks = (n + 1) / 2;
      const bool high = phase < high_ticks;
      const uint64_t into_half = high ? phase : phase - high_ticks;
      const uint64_t count = n > 2 * into_half ? (n - 2 * into_half) & ~uint64_t{1} : 0;
      return {static_cast<uint32_t>(count), ch.paused || high};
    }
    case 4:
    case 5:
    default:
      // OUT strobes low for the one tick at terminal count.
      return {wrapped, d != n};
  }
}

uint16_t Pit8254::EncodeCount(const Channel& ch, uint32_t ticks) {
  if (!ch.bcd) return static_cast<uint16_t>(ticks & 0xffff);
  uint32_t value = ticks % 10000;
  uint16_t bcd = 0;
  for (int digit = 0; digit < 4; ++digit) {
    bcd = static_cast<uint16_t>(bcd | ((value % 10) << (4 * digit)));
    value /= 10;
  }
  return bcd;
}

uint8_t Pit8254::StatusByte(const Channel& ch, Clock::time_point now) {
  return static_cast<uint8_t>((Observe(ch, now).out ? 0x80 : 0) | (ch.null_count ? 0x40 : 0) | (ch.access << 4) |
                              (ch.mode << 1) | (ch.bcd ? 1 : 0));
}

uint8_t Pit8254::ReadChannel(Channel& ch, Clock::time_point now) {
  if (ch.status_latched) {
    ch.status_latched = false;
    return ch.latched_status;
  }
  const auto lsb = [](uint16_t v) { return static_cast<uint8_t>(v & 0xff); };
  const auto msb = [](uint16_t v) { return static_cast<uint8_t>(v >> 8); };
  if (ch.count_latched) {
    const uint16_t v = ch.latched_count;
    switch (ch.access) {
      case 1:
        ch.count_latched = false;
        return lsb(v);
      case 2:
        ch.count_latched = false;
        return msb(v);
      default:
        if (!ch.latch_msb_next) {
          ch.latch_msb_next = true;
          return lsb(v);
        }
        ch.latch_msb_next = false;
        ch.count_latched = false;
        return msb(v);
    }
  }
  // Unlatched reads see the counter as it is at each read (two reads may straddle a tick).
  const uint16_t v = EncodeCount(ch, Observe(ch, now).count);
  switch (ch.access) {
    case 1:
      return lsb(v);
    case 2:
      return msb(v);
    default:
      ch.read_msb_next = !ch.read_msb_next;
      return ch.read_msb_next ? lsb(v) : msb(v);
  }
}

void Pit8254::WriteControl(uint8_t value, Clock::time_point now) {
  const unsigned select = value >> 6;
  if (select == 3) {
    // Read-back: bit 5 clear latches counts, bit 4 clear latches status, bits 1-3 pick channels 0-2.
    for (size_t i = 0; i < channels_.size(); ++i) {
      if (!(value & (2u << i))) continue;
      Channel& ch = channels_[i];
      if (!(value & 0x10) && !ch.status_latched) {
        ch.latched_status = StatusByte(ch, now);
        ch.status_latched = true;
      }
      if (!(value & 0x20) && !ch.count_latched) {
        ch.latched_count = EncodeCount(ch, Observe(ch, now).count);
        ch.count_latched = true;
        ch.latch_msb_next = false;
      }
    }
    return;
  }
  Channel& ch = channels_[select];
  const uint8_t access = (value >> 4) & 3;
  if (access == 0) {
    // Counter latch command; a second latch before the first is read is ignored.
    if (!ch.count_latched) {
      ch.latched_count = EncodeCount(ch, Observe(ch, now).count);
      ch.count_latched = true;
      ch.latch_msb_next = false;
    }
    return;
  }
  ch.frozen_count = Observe(ch, now).count;
  uint8_t mode = (value >> 1) & 7;
  if (mode >= 6) mode -= 4;  // 6 and 7 are aliases of 2 and 3
  ch.mode = mode;
  ch.access = access;
  ch.bcd = value & 1;
  // A control word stops the counter until a count is written and resets both byte flip-flops.
  ch.loaded = false;
  ch.triggered = false;
  ch.paused = false;
  ch.null_count = true;
  ch.write_msb_next = false;
  ch.read_msb_next = false;
  ch.count_latched = false;
  ch.status_latched = false;
}

void Pit8254::WriteChannel(int index, uint8_t value, Clock::time_point now) {
  Channel& ch = channels_[index];
  switch (ch.access) {
    case 1:
      LoadCount(index, value, now);
      return;
    case 2:
      LoadCount(index, static_cast<uint32_t>(value) << 8, now);
      return;
    default:
      if (!ch.write_msb_next) {
        ch.write_lsb = value;
        ch.write_msb_next = true;
        if (ch.mode == 0) {
          // In mode 0 the first byte of a new count stops the counter (OUT low) until the second.
          ch.frozen_count = Observe(ch, now).count;
          ch.loaded = false;
        }
        return;
      }
      ch.write_msb_next = false;
      LoadCount(index, ch.write_lsb | (static_cast<uint32_t>(value) << 8), now);
      return;
  }
}

void Pit8254::LoadCount(int index, uint32_t written, Clock::time_point now) {
  Channel& ch = channels_[index];
  ch.reload = DecodeCount(static_cast<uint16_t>(written), ch.bcd);
  ch.loaded = true;
  ch.null_count = false;
  ch.base_ticks = 0;
  ch.start = now;
  if (ch.mode == 1 || ch.mode == 5) {
    // Hardware-triggered modes wait for a gate rising edge.
    ch.triggered = false;
    ch.paused = false;
  } else {
    ch.paused = !ch.gate;
  }
}

void Pit8254::SetGate(int index, bool high, Clock::time_point now) {
  Channel& ch = channels_[index];
  const bool rising = high && !ch.gate;
  const bool falling = !high && ch.gate;
  ch.gate = high;
  if (!ch.loaded || (!rising && !falling)) return;
  switch (ch.mode) {
    case 0:
    case 4:
      // Gate low suspends counting; high resumes where it stopped.
      if (falling) {
        ch.base_ticks = ElapsedTicks(ch, now);
        ch.paused = true;
      } else {
        ch.start = now;
        ch.paused = false;
      }
      return;
    case 1:
    case 5:
      if (rising) {
        ch.triggered = true;
        ch.base_ticks = 0;
        ch.start = now;
        ch.paused = false;
      }
      return;
    default:
      // Modes 2 and 3: gate low stops the count with OUT high; a rising edge reloads it.
      if (falling) {
        ch.base_ticks = ElapsedTicks(ch, now);
        ch.paused = true;
      } else {
        ch.base_ticks = 0;
        ch.start = now;
        ch.paused = false;
      }
      return;
  }
}

void Pit8254::Reschedule(Clock::time_point now, TimerService::TimerId* to_cancel) {
  ++generation_;
  *to_cancel = timer_id_;
  timer_id_ = 0;
  ScheduleNext(now);
}

void Pit8254::ScheduleNext(Clock::time_point now) {
  if (stopping_) return;
  const Channel& ch = channels_[0];
  if (!ch.loaded || ch.paused) return;
  if ((ch.mode == 1 || ch.mode == 5) && !ch.triggered) return;
  const uint64_t n = ch.reload;
  const uint64_t d = ElapsedTicks(ch, now);
  uint64_t target = 0;  // the tick count at which OUT next rises
  if (ch.mode == 2 || ch.mode == 3) {
    target = (d / n + 1) * n;
  } else {
    if (d >= n) return;  // a one-shot that has already fired
    target = n;
  }
  Clock::time_point deadline = ch.start + DurationOf(target > ch.base_ticks ? target - ch.base_ticks : 0);
  // Cap the IRQ rate a guest can ask for.
  deadline = std::max(deadline, last_irq_ + std::chrono::duration_cast<Clock::duration>(kMinIrqInterval));
  const uint64_t generation = generation_;
  timer_id_ = timers_->Schedule(deadline, [this, generation] { OnChannel0Timer(generation); });
}

void Pit8254::OnChannel0Timer(uint64_t generation) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || generation != generation_) return;
  timer_id_ = 0;
  // OUT's rising edge: IRQ 0 is edge-triggered at the PIC and at IOAPIC pin 2.
  irq_sink_->SetIrq(irq_, true);
  irq_sink_->SetIrq(irq_, false);
  ++irq_pulses_;
  const Clock::time_point now = Clock::now();
  last_irq_ = now;
  ScheduleNext(now);
}

}  // namespace coalesce
