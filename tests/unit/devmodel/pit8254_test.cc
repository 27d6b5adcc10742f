#include "devmodel/pit8254.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "devmodel/system_control_port_b.h"
#include "hypervisor/base/platform.h"
#include "tests/unit/devmodel/recording_irq_sink.h"

namespace coalesce {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint64_t kCh0 = 0, kCh2 = 2, kControl = 3;
constexpr uint32_t kIrq = platform::kPitIrq;

// Whole PIT ticks in a host interval, the same arithmetic bound the device must respect.
uint64_t TicksIn(Clock::duration d) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return static_cast<uint64_t>(static_cast<long double>(ns) * Pit8254::kFrequencyHz / 1e9L);
}

uint16_t LatchAndRead(Pit8254& pit, uint8_t channel) {
  Outb(pit, kControl, static_cast<uint8_t>(channel << 6));  // counter latch command
  const uint8_t lo = Inb(pit, channel);
  const uint8_t hi = Inb(pit, channel);
  return static_cast<uint16_t>(lo | (hi << 8));
}

struct Fixture {
  RecordingIrqSink sink;
  TimerService timers;
  Pit8254 pit{&sink, kIrq, &timers};
  SystemControlPortB port61{&pit};
};

TEST_CASE("pit: channel 0 counts down at about 1.193182 MHz") {
  Fixture f;
  Outb(f.pit, kControl, 0x34);  // ch0, LSB then MSB, mode 2
  Outb(f.pit, kCh0, 0x00);
  Outb(f.pit, kCh0, 0x00);  // 65536: a 55 ms period
  const auto t0 = Clock::now();
  const uint16_t c1 = LatchAndRead(f.pit, 0);
  const auto t1 = Clock::now();
  std::this_thread::sleep_for(milliseconds(10));
  const auto t2 = Clock::now();
  const uint16_t c2 = LatchAndRead(f.pit, 0);
  const auto t3 = Clock::now();
  const uint64_t outer = TicksIn(t3 - t0);
  if (outer >= 60000) {
    WARN("descheduled for more than a PIT period; bounds not checkable this run");
    return;
  }
  // The counter wraps through 65536 in mode 2, so the difference is taken modulo 65536.
  const uint64_t elapsed = static_cast<uint16_t>(c1 - c2);
  CHECK(elapsed + 1 >= TicksIn(t2 - t1));
  CHECK(elapsed <= outer + 1);
  CHECK(elapsed >= 10'000);  // 10 ms is ~11932 ticks: the counter runs at MHz rate, not kHz
}

TEST_CASE("pit: channel 0 in mode 2 fires IRQ 0 periodically") {
  Fixture f;
  Outb(f.pit, kControl, 0x34);
  Outb(f.pit, kCh0, 1193 & 0xff);
  Outb(f.pit, kCh0, 1193 >> 8);  // 1 kHz
  const auto start = Clock::now();
  const uint64_t before = f.pit.irq_pulses();
  REQUIRE(RecordingIrqSink::WaitFor([&] { return f.pit.irq_pulses() >= before + 20; }, milliseconds(5000)));
  const uint64_t pulses = f.pit.irq_pulses() - before;
  const auto elapsed_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  // Never more than one per period (missed periods are coalesced, not replayed).
  CHECK(pulses <= static_cast<uint64_t>(elapsed_ms) + 2);
  // Each expiry is a pulse: the line ends low.
  CHECK(f.sink.rising_edges(kIrq) >= 20);
  for (const auto& [irq, level] : f.sink.events()) CHECK(irq == kIrq);
  Outb(f.pit, kControl, 0x30);  // mode 0 without a count: stops the periodic timer
  const uint64_t stopped = f.pit.irq_pulses();
  std::this_thread::sleep_for(milliseconds(20));
  CHECK(f.pit.irq_pulses() <= stopped + 1);  // at most one already in flight
}

TEST_CASE("pit: mode 0 one-shot fires exactly once") {
  Fixture f;
  Outb(f.pit, kControl, 0x30);  // ch0, LSB then MSB, mode 0
  const uint64_t before = f.pit.irq_pulses();
  Outb(f.pit, kCh0, 11932 & 0xff);
  Outb(f.pit, kCh0, 11932 >> 8);  // 10 ms
  REQUIRE(RecordingIrqSink::WaitFor([&] { return f.pit.irq_pulses() > before; }, milliseconds(5000)));
  std::this_thread::sleep_for(milliseconds(30));
  CHECK(f.pit.irq_pulses() == before + 1);
  // After terminal count OUT stays high (read-back status bit 7).
  Outb(f.pit, kControl, 0xe2);  // read-back: status only, channel 0
  CHECK((Inb(f.pit, kCh0) & 0x80) == 0x80);
}

TEST_CASE("pit: Linux's mode 4 one-shot (clockevents) fires") {
  Fixture f;
  Outb(f.pit, kControl, 0x38);
  const uint64_t before = f.pit.irq_pulses();
  Outb(f.pit, kCh0, 0x00);
  Outb(f.pit, kCh0, 0x10);  // 4096 ticks, ~3.4 ms
  CHECK(RecordingIrqSink::WaitFor([&] { return f.pit.irq_pulses() > before; }, milliseconds(5000)));
}

TEST_CASE("pit: port 0x61 gates channel 2 and shows its output") {
  Fixture f;
  // Gate low: a loaded mode 0 count holds still with OUT low.
  Outb(f.port61, 0, 0x00);
  Outb(f.pit, kControl, 0xb0);  // ch2, LSB then MSB, mode 0
  Outb(f.pit, kCh2, 5966 & 0xff);
  Outb(f.pit, kCh2, 5966 >> 8);  // 5 ms
  const uint16_t held1 = LatchAndRead(f.pit, 2);
  std::this_thread::sleep_for(milliseconds(2));
  const uint16_t held2 = LatchAndRead(f.pit, 2);
  CHECK(held1 == 5966);
  CHECK(held2 == 5966);
  CHECK((Inb(f.port61, 0) & 0x20) == 0);
  // Gate high (speaker off), as pit_calibrate_tsc does, then poll bit 5.
  Outb(f.port61, 0, static_cast<uint8_t>((Inb(f.port61, 0) & ~0x02) | 0x01));
  CHECK((Inb(f.port61, 0) & 0x03) == 0x01);
  CHECK(RecordingIrqSink::WaitFor([&] { return (Inb(f.port61, 0) & 0x20) != 0; }, milliseconds(5000)));
  CHECK(f.sink.events().empty());  // channel 2 has no IRQ
  // Bit 4 (refresh) flips on every read.
  const uint8_t r1 = Inb(f.port61, 0) & 0x10;
  const uint8_t r2 = Inb(f.port61, 0) & 0x10;
  CHECK(r1 != r2);
  // Lowering the gate in mode 0 pauses the count.
  Outb(f.pit, kControl, 0xb0);
  Outb(f.pit, kCh2, 0xff);
  Outb(f.pit, kCh2, 0xff);
  Outb(f.port61, 0, 0x00);
  const uint16_t p1 = LatchAndRead(f.pit, 2);
  std::this_thread::sleep_for(milliseconds(2));
  CHECK(LatchAndRead(f.pit, 2) == p1);
}

TEST_CASE("pit: quick_pit_calibrate's unlatched MSB reads descend") {
  Fixture f;
  Outb(f.port61, 0, static_cast<uint8_t>((Inb(f.port61, 0) & ~0x02) | 0x01));
  Outb(f.pit, kControl, 0xb0);
  Outb(f.pit, kCh2, 0xff);
  Outb(f.pit, kCh2, 0xff);
  // Each sample is an LSB read (ignored) then the MSB, as pit_verify_msb does.
  auto msb = [&] {
    Inb(f.pit, kCh2);
    return Inb(f.pit, kCh2);
  };
  const auto t0 = Clock::now();
  const uint8_t first = msb();
  CHECK(first >= 0xfe);
  std::this_thread::sleep_for(milliseconds(2));  // ~2386 ticks: the MSB drops by ~9
  const uint8_t later = msb();
  const uint64_t bound = TicksIn(Clock::now() - t0) / 256 + 1;
  if (bound >= 0xf0) return;  // descheduled for most of the 55 ms count: nothing to compare
  CHECK(later < first);
  CHECK(static_cast<uint64_t>(first - later) <= bound);
}

TEST_CASE("pit: latched counts hold, read-back returns status then count") {
  Fixture f;
  Outb(f.pit, kControl, 0x34);
  CHECK_FALSE(f.pit.irq_pulses() > 1000);
  Outb(f.pit, kControl, 0xe2);  // status of channel 0 before a count: null count set
  CHECK(Inb(f.pit, kCh0) == (0x80 | 0x40 | 0x30 | (2 << 1)));
  Outb(f.pit, kCh0, 0x00);
  Outb(f.pit, kCh0, 0x00);

  Outb(f.pit, kControl, 0x00);  // latch
  const auto latched_at = Clock::now();
  std::this_thread::sleep_for(milliseconds(5));
  Outb(f.pit, kControl, 0x00);  // a second latch before reading is ignored
  const uint16_t latched = static_cast<uint16_t>(Inb(f.pit, kCh0) | (Inb(f.pit, kCh0) << 8));
  const uint16_t live = static_cast<uint16_t>(Inb(f.pit, kCh0) | (Inb(f.pit, kCh0) << 8));
  const uint64_t since = TicksIn(Clock::now() - latched_at);
  if (since < 60000) {
    const uint64_t moved = static_cast<uint16_t>(latched - live);
    CHECK(moved + 2 >= TicksIn(milliseconds(5)));  // the latch did not follow the counter
    CHECK(moved <= since + 1);
  }

  Outb(f.pit, kControl, 0xc2);  // read-back: count and status of channel 0
  const uint8_t status = Inb(f.pit, kCh0);
  CHECK((status & 0x3f) == (0x30 | (2 << 1)));  // LSB/MSB, mode 2, binary, count loaded
  const uint16_t rb = static_cast<uint16_t>(Inb(f.pit, kCh0) | (Inb(f.pit, kCh0) << 8));
  CHECK(rb != 0x0000);  // mode 2 never shows 0
}

TEST_CASE("pit: LSB-only, MSB-only and BCD access modes") {
  Fixture f;
  Outb(f.pit, kControl, 0x90);  // ch2, LSB only, mode 0
  Outb(f.pit, kCh2, 0x80);      // gate low: holds at 128
  CHECK(Inb(f.pit, kCh2) == 0x80);
  CHECK(Inb(f.pit, kCh2) == 0x80);  // no flip-flop in LSB-only mode
  Outb(f.pit, kControl, 0xa0);      // ch2, MSB only
  Outb(f.pit, kCh2, 0x12);
  CHECK(Inb(f.pit, kCh2) == 0x12);
  Outb(f.pit, kControl, 0xb1);  // ch2, LSB then MSB, mode 0, BCD
  Outb(f.pit, kCh2, 0x34);
  Outb(f.pit, kCh2, 0x12);  // 1234 decimal
  CHECK(LatchAndRead(f.pit, 2) == 0x1234);
  Outb(f.pit, kCh2, 0xff);
  Outb(f.pit, kCh2, 0xff);  // not BCD: clamped, never out of range
  const uint16_t v = LatchAndRead(f.pit, 2);
  for (int nibble = 0; nibble < 4; ++nibble) CHECK(((v >> (4 * nibble)) & 0xf) <= 9);
}

TEST_CASE("pit: destruction with a pending periodic timer is clean") {
  RecordingIrqSink sink;
  TimerService timers;
  for (int i = 0; i < 20; ++i) {
    Pit8254 pit(&sink, kIrq, &timers);
    Outb(pit, kControl, 0x34);
    Outb(pit, kCh0, 0x01);
    Outb(pit, kCh0, 0x00);  // 1 tick: rate-limited, but always pending
    std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
  SUCCEED();
}

}  // namespace
}  // namespace coalesce
