#include "devmodel/acpi_pm.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "hypervisor/base/platform.h"
#include "tests/unit/devmodel/recording_irq_sink.h"

namespace coalesce {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
constexpr uint32_t kSci = platform::kAcpiSciIrq;

uint64_t PmTicksIn(Clock::duration d) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return static_cast<uint64_t>(static_cast<long double>(ns) * AcpiPm::kTimerHz / 1e9L);
}

TEST_CASE("acpi pm: the PM timer runs at 3.579545 MHz, 24 bits wide, monotonic through its wrap") {
  RecordingIrqSink sink;
  AcpiPm pm(&sink, kSci, nullptr, nullptr);
  const auto t0 = Clock::now();
  uint32_t prev = Inl(pm, AcpiPm::kTimerOffset);
  auto prev_before = t0;
  auto prev_after = Clock::now();
  bool wrapped = false;
  uint64_t total = 0;
  // A 24-bit counter at 3.58 MHz wraps every ~4.7 s.
  while (!wrapped && Clock::now() - t0 < std::chrono::seconds(8)) {
    std::this_thread::sleep_for(milliseconds(5));
    const auto before = Clock::now();
    const uint32_t v = Inl(pm, AcpiPm::kTimerOffset);
    const auto after = Clock::now();
    REQUIRE(v <= AcpiPm::kTimerMask);
    const uint32_t step = (v - prev) & AcpiPm::kTimerMask;
    // The counter moved forward by the host time between the two reads, within their windows.
    CHECK(step <= PmTicksIn(after - prev_before) + 1);
    CHECK(step + 1 >= PmTicksIn(before - prev_after));
    if (v < prev) wrapped = true;
    total += step;
    prev = v;
    prev_before = before;
    prev_after = after;
  }
  CHECK(wrapped);
  CHECK(total <= PmTicksIn(Clock::now() - t0) + 1);  // the sum of steps never outruns host time
}

TEST_CASE("acpi pm: SLP_EN with SLP_TYP = S5 calls on_poweroff, other sleep types wake at once") {
  RecordingIrqSink sink;
  int poweroffs = 0;
  AcpiPm pm(&sink, kSci, nullptr, [&] { ++poweroffs; });
  CHECK((Inw(pm, AcpiPm::kControlOffset) & AcpiPm::kSciEnable) != 0);
  Outw(pm, AcpiPm::kControlOffset, static_cast<uint16_t>(platform::kAcpiS5SleepType << 10));  // type, no SLP_EN
  CHECK(poweroffs == 0);
  CHECK((Inw(pm, AcpiPm::kControlOffset) & AcpiPm::kSleepTypeMask) == platform::kAcpiS5SleepType << 10);
  Outw(pm, AcpiPm::kControlOffset, static_cast<uint16_t>(3u << 10 | AcpiPm::kSleepEnable));  // S3
  CHECK(poweroffs == 0);
  CHECK((Inw(pm, AcpiPm::kStatusOffset) & AcpiPm::kWakeStatus) != 0);
  CHECK((Inw(pm, AcpiPm::kControlOffset) & AcpiPm::kSleepEnable) == 0);  // write-only
  Outw(pm, AcpiPm::kControlOffset, static_cast<uint16_t>(platform::kAcpiS5SleepType << 10 | AcpiPm::kSleepEnable));
  CHECK(poweroffs == 1);
}

TEST_CASE("acpi pm: power button raises the SCI when enabled; write 1 to clear") {
  RecordingIrqSink sink;
  AcpiPm pm(&sink, kSci, nullptr, nullptr);
  pm.PressPowerButton();
  CHECK((Inw(pm, AcpiPm::kStatusOffset) & AcpiPm::kPowerButtonStatus) != 0);
  CHECK_FALSE(sink.level(kSci));  // not enabled
  Outw(pm, AcpiPm::kEnableOffset, AcpiPm::kPowerButtonStatus);
  CHECK(Inw(pm, AcpiPm::kEnableOffset) == AcpiPm::kPowerButtonStatus);
  CHECK(sink.level(kSci));
  Outw(pm, AcpiPm::kStatusOffset, 0x0001);  // clearing another bit leaves it
  CHECK(sink.level(kSci));
  Outw(pm, AcpiPm::kStatusOffset, AcpiPm::kPowerButtonStatus);
  CHECK_FALSE(sink.level(kSci));
  CHECK((Inw(pm, AcpiPm::kStatusOffset) & AcpiPm::kPowerButtonStatus) == 0);
  // Byte-wide access to the high status byte works the same way.
  pm.PressPowerButton();
  CHECK(sink.level(kSci));
  Outb(pm, AcpiPm::kStatusOffset + 1, 0x01);
  CHECK_FALSE(sink.level(kSci));
}

TEST_CASE("acpi pm: TMR_EN raises the SCI when the timer's bit 23 toggles") {
  RecordingIrqSink sink;
  TimerService timers;
  AcpiPm pm(&sink, kSci, &timers, nullptr);
  Outw(pm, AcpiPm::kStatusOffset, 0xffff);  // clear everything
  Outw(pm, AcpiPm::kEnableOffset, AcpiPm::kTimerStatus);
  // bit 23 toggles every 2^23 ticks, ~2.34 s.
  REQUIRE(RecordingIrqSink::WaitFor([&] { return sink.level(kSci); }, milliseconds(5000)));
  CHECK((Inw(pm, AcpiPm::kStatusOffset) & AcpiPm::kTimerStatus) != 0);
  Outw(pm, AcpiPm::kStatusOffset, AcpiPm::kTimerStatus);
  CHECK_FALSE(sink.level(kSci));
}

}  // namespace
}  // namespace coalesce
