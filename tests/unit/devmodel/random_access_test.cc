// Every device takes arbitrary guest accesses (offsets past its range, odd widths, random values) without
// crashing, hanging or asserting; afterwards it still answers. Deterministic seed, real TimerService.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

#include "devmodel/acpi_pm.h"
#include "devmodel/cmos_rtc.h"
#include "devmodel/debug_exit.h"
#include "devmodel/fw_cfg.h"
#include "devmodel/pit8254.h"
#include "devmodel/reset_control.h"
#include "devmodel/system_control_port_b.h"
#include "devmodel/uart16550.h"
#include "tests/unit/devmodel/recording_irq_sink.h"

namespace coalesce {
namespace {

void Hammer(BusDevice& dev, uint64_t size, std::mt19937_64& rng, int operations) {
  static constexpr size_t kWidths[] = {1, 2, 4, 8};
  for (int i = 0; i < operations; ++i) {
    const uint64_t offset = rng() % (size + 2);
    const size_t width = kWidths[rng() % 4];
    uint8_t buf[8];
    const uint64_t value = rng();
    for (size_t b = 0; b < width; ++b) buf[b] = static_cast<uint8_t>(value >> (8 * b));
    if (rng() % 2) {
      dev.Write(offset, {buf, width});
    } else {
      dev.Read(offset, {buf, width});
    }
  }
}

TEST_CASE("devices survive random guest accesses") {
  const uint64_t seed = GENERATE(0xc0a1e5ceULL, 1ULL, 2ULL, 3ULL);
  CAPTURE(seed);
  RecordingIrqSink sink;
  TimerService timers;
  std::mt19937_64 rng(seed);
  uint64_t exits = 0, resets = 0, poweroffs = 0, out_bytes = 0;

  Uart16550 uart(&sink, 4, [&](uint8_t) { ++out_bytes; });
  DebugExit debug_exit([&](uint32_t) { ++exits; });
  FwCfg fw_cfg;
  REQUIRE(fw_cfg.AddFile("etc/e820", std::vector<uint8_t>(40, 1)).ok());
  Pit8254 pit(&sink, 0, &timers);
  SystemControlPortB port61(&pit);
  CmosRtc rtc(&sink, 8, &timers);
  AcpiPm acpi(&sink, 9, &timers, [&] { ++poweroffs; });
  ResetControl reset([&] { ++resets; });

  struct Target {
    BusDevice* dev;
    uint64_t size;
  } targets[] = {{&uart, Uart16550::kSize}, {&debug_exit, DebugExit::kSize}, {&fw_cfg, FwCfg::kSize},
                 {&pit, Pit8254::kSize},    {&port61, SystemControlPortB::kSize}, {&rtc, CmosRtc::kSize},
                 {&acpi, AcpiPm::kSize},    {&reset, ResetControl::kSize}};
  for (int round = 0; round < 20; ++round) {
    for (Target& t : targets) Hammer(*t.dev, t.size, rng, 500);
    const uint8_t input[] = {1, 2, 3};
    uart.ReceiveBytes(input);
    acpi.PressPowerButton();
  }
  // Still answering sensibly.
  Outw(fw_cfg, 0, FwCfg::kSignatureKey);
  CHECK(Inb(fw_cfg, 1) == 'Q');
  CHECK(acpi.TimerValue() <= AcpiPm::kTimerMask);
  Outb(rtc, 0, 0x0d);
  CHECK(Inb(rtc, 1) == 0x80);
  CHECK(exits > 0);
  CHECK(resets > 0);
}

}  // namespace
}  // namespace coalesce
