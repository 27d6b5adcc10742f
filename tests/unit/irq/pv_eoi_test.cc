// PV EOI in the user-space local APIC: when the guest's flag may be set (KVM's rules for its own APIC), what
// an ended flag does, and that the MSR is checked, reset and moved with the APIC.
#include <catch2/catch.hpp>

#include "hypervisor/irq/apic_registers.h"
#include "tests/unit/irq/irq_test_util.h"

namespace coalesce {
namespace {

using testing::ApicSystem;
using testing::Enable;
using testing::IsrHas;
using testing::Read32;
using testing::Write32;

constexpr uint64_t kFlag = 0x12340;  // the guest's per-CPU word
constexpr uint64_t kEnabled = 1;

ApicMessage Fixed(uint8_t vector, bool level = false) {
  return ApicMessage{.vector = vector, .destination = 0, .level_triggered = level};
}

TEST_CASE("PV EOI: the flag is offered only for a lone edge-triggered interrupt in service") {
  ApicSystem sys(1);
  LocalApic& a = sys.apic(0);
  Enable(a);
  a.Accept(Fixed(0x40));
  REQUIRE(a.AcknowledgeInterrupt() == 0x40);
  CHECK_FALSE(a.PvEoiFlagIfSkippable());  // the guest has not enabled PV EOI
  REQUIRE(a.SetPvEoiMsr(kFlag | kEnabled).ok());
  CHECK(a.pv_eoi_msr() == (kFlag | kEnabled));
  CHECK(a.PvEoiFlagIfSkippable() == std::optional<uint64_t>(kFlag));

  SECTION("a pending interrupt, even a lower one, needs the EOI exit to be let in") {
    a.Accept(Fixed(0x30));
    CHECK_FALSE(a.PvEoiFlagIfSkippable());
  }
  SECTION("nested interrupts end in order through the register") {
    a.Accept(Fixed(0x50));
    REQUIRE(a.AcknowledgeInterrupt() == 0x50);
    CHECK_FALSE(a.PvEoiFlagIfSkippable());
    Write32(a, apic::kEoi, 0);  // 0x50 ended by the register: 0x40 alone again
    CHECK(a.PvEoiFlagIfSkippable() == std::optional<uint64_t>(kFlag));
  }
  SECTION("the guest ended it through the flag") {
    a.PvEoiCompleted();
    CHECK_FALSE(IsrHas(a, 0x40));
    CHECK_FALSE(a.PvEoiFlagIfSkippable());  // nothing in service
    CHECK(Read32(a, apic::kPpr) == 0u);
  }
  SECTION("disabled again") {
    REQUIRE(a.SetPvEoiMsr(kFlag).ok());
    CHECK_FALSE(a.PvEoiFlagIfSkippable());
  }
}

TEST_CASE("PV EOI: a level-triggered interrupt keeps its EOI write, which the IOAPIC waits for") {
  ApicSystem sys(1);
  LocalApic& a = sys.apic(0);
  Enable(a);
  REQUIRE(a.SetPvEoiMsr(kFlag | kEnabled).ok());
  a.Accept(Fixed(0x61, /*level=*/true));
  REQUIRE(a.AcknowledgeInterrupt() == 0x61);
  CHECK_FALSE(a.PvEoiFlagIfSkippable());
}

TEST_CASE("PV EOI: an unaligned flag is refused (#GP); INIT and reset turn PV EOI off") {
  ApicSystem sys(2);
  LocalApic& a = sys.apic(1);
  CHECK_FALSE(a.SetPvEoiMsr(kFlag | 2 | kEnabled).ok());
  CHECK_FALSE(a.SetPvEoiMsr(kFlag | 4).ok());
  CHECK(a.pv_eoi_msr() == 0u);
  REQUIRE(a.SetPvEoiMsr(kFlag | kEnabled).ok());
  a.Reset();
  CHECK(a.pv_eoi_msr() == 0u);
  REQUIRE(a.SetPvEoiMsr(kFlag | kEnabled).ok());
  testing::SendIpi(sys.apic(0), 1, testing::kIcrInit | testing::kIcrAssert);
  REQUIRE(a.TakeInit());
  CHECK(a.pv_eoi_msr() == 0u);
}

TEST_CASE("PV EOI: the MSR moves with the APIC's state") {
  ApicSystem source(1), target(1);
  REQUIRE(source.apic(0).SetPvEoiMsr(kFlag | kEnabled).ok());
  target.apic(0).LoadState(source.apic(0).SaveState());
  CHECK(target.apic(0).pv_eoi_msr() == (kFlag | kEnabled));
}

}  // namespace
}  // namespace coalesce
