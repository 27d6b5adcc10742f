// A local APIC's state saved and loaded into another APIC with the same id (LocalApic::SaveState/LoadState),
// as when its vCPU moves to another node: every register reads the same through MMIO, pending and in-service
// vectors carry over, and the timer goes on counting and fires on the target.
#include <catch2/catch.hpp>

#include "tests/unit/irq/irq_test_util.h"

namespace coalesce {
namespace {

using namespace testing;  // NOLINT

TEST_CASE("local APIC: saved state loaded into another APIC reads the same and keeps its work") {
  ApicSystem source(2), target(2);
  LocalApic& a = source.apic(1);
  Enable(a);
  Write32(a, apic::kTpr, 0x20);
  Write32(a, apic::kDfr, 0x0fffffff);  // cluster model
  Write32(a, apic::kLdr, 0x03000000);
  Write32(a, apic::kLvtLint0, 0x10000 | 0x30);
  Write32(a, apic::kLvtError, 0xfe);
  Write32(a, apic::kTimerDivide, 0xb);
  Write32(a, apic::kLvtTimer, 0xec);
  Write32(a, apic::kTimerInitialCount, 200'000'000);  // 200 ms at 1 ns per tick: still running when moved
  a.Accept(ApicMessage{.vector = 0x52, .destination = 1});
  a.Accept(ApicMessage{.vector = 0x41, .destination = 1, .level_triggered = true});
  REQUIRE(a.AcknowledgeInterrupt() == 0x52);  // 0x52 in service, 0x41 still requested (level: TMR set)

  const LocalApicState saved = a.SaveState();
  CHECK(saved.timer_running == 1);
  CHECK(saved.timer_remaining_ns > 0);
  LocalApic& b = target.apic(1);
  b.LoadState(saved);

  for (uint32_t reg : {apic::kTpr, apic::kLdr, apic::kDfr, apic::kSvr, apic::kLvtLint0, apic::kLvtError,
                       apic::kLvtTimer, apic::kTimerInitialCount, apic::kTimerDivide, apic::kPpr}) {
    INFO("register " << std::hex << reg);
    CHECK(Read32(b, reg) == Read32(a, reg));
  }
  for (uint32_t i = 0; i < 8; ++i) {
    CHECK(Read32(b, apic::kIrrBase + 0x10 * i) == Read32(a, apic::kIrrBase + 0x10 * i));
    CHECK(Read32(b, apic::kIsrBase + 0x10 * i) == Read32(a, apic::kIsrBase + 0x10 * i));
    CHECK(Read32(b, apic::kTmrBase + 0x10 * i) == Read32(a, apic::kTmrBase + 0x10 * i));
  }
  CHECK(IsrHas(b, 0x52));
  CHECK(IrrHas(b, 0x41));
  CHECK(TmrHas(b, 0x41));
  CHECK(b.MatchesDestination(DestinationMode::kLogical, 0x03));
  // The countdown continues on the target (not restarted from the initial count, not lost).
  const uint32_t left = Read32(b, apic::kTimerCurrentCount);
  CHECK(left > 0);
  CHECK(left <= 200'000'000u);
  // EOI of 0x52 on the target, then the pending 0x41 (above TPR's class 2) is delivered there.
  Write32(b, apic::kEoi, 0);
  CHECK(b.PendingInterrupt() == std::optional<uint8_t>(0x41));
  REQUIRE(b.AcknowledgeInterrupt() == 0x41);
  Write32(b, apic::kEoi, 0);
  REQUIRE(WaitFor([&] { return b.PendingInterrupt() == std::optional<uint8_t>(0xec); }));
  CHECK(target.kicks(1) >= 1);
}

TEST_CASE("local APIC: an AP waiting for its SIPI and a pending NMI move too") {
  ApicSystem source(2), target(2);
  LocalApic& a = source.apic(1);
  a.Accept(ApicMessage{.delivery_mode = DeliveryMode::kNmi, .destination = 1});
  const LocalApicState saved = a.SaveState();
  CHECK(saved.wait_for_sipi == 1);
  LocalApic& b = target.apic(1);
  b.LoadState(saved);
  CHECK(b.HasNonMaskableWork());
  CHECK(b.TakeNmi());
  b.Accept(ApicMessage{.vector = 0x9a, .delivery_mode = DeliveryMode::kStartup, .destination = 1});
  CHECK(b.TakeStartup() == std::optional<uint8_t>(0x9a));
}

}  // namespace
}  // namespace coalesce
