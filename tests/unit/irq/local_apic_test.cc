// Register semantics of the user-space local APIC: what a guest reads and writes through the xAPIC page.
#include <catch2/catch.hpp>

#include "hypervisor/irq/apic_registers.h"
#include "tests/unit/irq/irq_test_util.h"

namespace coalesce {
namespace {

using testing::ApicSystem;
using testing::Enable;
using testing::IrrHas;
using testing::IsrHas;
using testing::Read32;
using testing::Write32;

ApicMessage Fixed(uint8_t vector, bool level = false) {
  ApicMessage msg;
  msg.vector = vector;
  msg.level_triggered = level;
  return msg;
}

TEST_CASE("lapic: id, version and reset values") {
  ApicSystem sys(3);
  LocalApic& bsp = sys.apic(0);
  LocalApic& ap = sys.apic(2);
  CHECK(Read32(ap, apic::kId) == 2u << 24);
  CHECK(Read32(bsp, apic::kVersion) == 0x50014u);
  CHECK(Read32(bsp, apic::kSvr) == 0xffu);
  CHECK(Read32(bsp, apic::kDfr) == 0xffffffffu);
  CHECK(Read32(bsp, apic::kLdr) == 0u);
  CHECK(Read32(bsp, apic::kTpr) == 0u);
  CHECK(Read32(ap, apic::kLvtTimer) == apic::kLvtMasked);
  CHECK(Read32(ap, apic::kLvtLint0) == apic::kLvtMasked);
  // The BSP comes up in virtual-wire mode so the PIC reaches it: LINT0 = ExtINT, unmasked.
  CHECK(Read32(bsp, apic::kLvtLint0) == 0x700u);
  CHECK(Read32(bsp, apic::kLvtError) == apic::kLvtMasked);
  CHECK_FALSE(bsp.SoftwareEnabled());
}

TEST_CASE("lapic: ID and version are read-only, unimplemented registers read 0") {
  ApicSystem sys(1);
  LocalApic& a = sys.apic(0);
  Write32(a, apic::kId, 7u << 24);
  CHECK(Read32(a, apic::kId) == 0u);
  Write32(a, apic::kVersion, 0);
  CHECK(Read32(a, apic::kVersion) == 0x50014u);
  const uint64_t before = a.anomalies();
  CHECK(Read32(a, 0x2f0) == 0u);  // LVT CMCI: beyond max LVT 5
  CHECK(Read32(a, 0xff0) == 0u);
  CHECK(a.anomalies() > before);
  // Out-of-page, misaligned and narrow writes are ignored; nothing crashes.
  uint8_t byte = 0x55;
  a.MmioWrite(apic::kTpr, {&byte, 1});
  a.MmioWrite(apic::kTpr + 1, {&byte, 1});
  a.MmioWrite(0x5000, {&byte, 1});
  CHECK(Read32(a, apic::kTpr) == 0u);
  uint8_t wide[8] = {};
  a.MmioRead(0xfff, wide);
  a.MmioRead(0x1000, wide);
  // A byte read returns the addressed byte of the 32-bit register.
  uint8_t id_byte = 0;
  a.MmioRead(apic::kVersion + 2, {&id_byte, 1});
  CHECK(id_byte == 0x05);
}

TEST_CASE("lapic: LDR, DFR and logical destination matching") {
  ApicSystem sys(1);
  LocalApic& a = sys.apic(0);
  Write32(a, apic::kLdr, 0x12345678);
  CHECK(Read32(a, apic::kLdr) == 0x12000000u);
  Write32(a, apic::kDfr, 0x0000'0000);
  CHECK(Read32(a, apic::kDfr) == 0x0fffffffu);
  Write32(a, apic::kDfr, 0xffff'ffff);
  CHECK(Read32(a, apic::kDfr) == 0xffffffffu);

  SECTION("flat model: any bit of the 8-bit mask") {
    Write32(a, apic::kLdr, 0x04u << 24);
    CHECK(a.MatchesDestination(DestinationMode::kLogical, 0x04));
    CHECK(a.MatchesDestination(DestinationMode::kLogical, 0x06));
    CHECK_FALSE(a.MatchesDestination(DestinationMode::kLogical, 0x03));
    CHECK_FALSE(a.MatchesDestination(DestinationMode::kLogical, 0x00));
    CHECK(a.MatchesDestination(DestinationMode::kLogical, 0xff));
  }
  SECTION("cluster model: cluster nibble equal and member bits overlap") {
    Write32(a, apic::kDfr, 0x0fffffff);
    Write32(a, apic::kLdr, 0x32u << 24);  // cluster 3, member bit 1
    CHECK(a.MatchesDestination(DestinationMode::kLogical, 0x32));
    CHECK(a.MatchesDestination(DestinationMode::kLogical, 0x3f));
    CHECK_FALSE(a.MatchesDestination(DestinationMode::kLogical, 0x31));
    CHECK_FALSE(a.MatchesDestination(DestinationMode::kLogical, 0x22));
    CHECK(a.MatchesDestination(DestinationMode::kLogical, 0xff));
  }
  SECTION("physical: own id or broadcast") {
    CHECK(a.MatchesDestination(DestinationMode::kPhysical, 0));
    CHECK(a.MatchesDestination(DestinationMode::kPhysical, 0xff));
    CHECK_FALSE(a.MatchesDestination(DestinationMode::kPhysical, 1));
  }
}

TEST_CASE("lapic: software disable drops fixed interrupts and masks the LVT") {
  ApicSystem sys(1);
  LocalApic& a = sys.apic(0);
  a.Accept(Fixed(0x40));
  CHECK_FALSE(IrrHas(a, 0x40));
  CHECK_FALSE(a.PendingInterrupt().has_value());

  Enable(a);
  Write32(a, apic::kLvtTimer, 0x20);
  CHECK(Read32(a, apic::kLvtTimer) == 0x20u);
  a.Accept(Fixed(0x40));
  CHECK(IrrHas(a, 0x40));
  CHECK(a.PendingInterrupt() == std::optional<uint8_t>(0x40));
  CHECK(sys.kicks(0) == 1);

  Write32(a, apic::kSvr, 0xff);  // disable again: IRR is kept but nothing is deliverable
  CHECK(Read32(a, apic::kLvtTimer) == (0x20u | apic::kLvtMasked));
  CHECK(IrrHas(a, 0x40));
  CHECK_FALSE(a.PendingInterrupt().has_value());
  Write32(a, apic::kLvtTimer, 0x21);  // the mask cannot be cleared while disabled
  CHECK(Read32(a, apic::kLvtTimer) == (0x21u | apic::kLvtMasked));
}

TEST_CASE("lapic: TPR masks by priority class, PPR and APR follow") {
  ApicSystem sys(1);
  LocalApic& a = sys.apic(0);
  Enable(a);
  Write32(a, apic::kTpr, 0x45);
  CHECK(Read32(a, apic::kTpr) == 0x45u);
  CHECK(Read32(a, apic::kPpr) == 0x45u);
  a.Accept(Fixed(0x41));  // same class as TPR: held
  CHECK_FALSE(a.PendingInterrupt().has_value());
  CHECK_FALSE(a.HasWork());
  a.Accept(Fixed(0x51));  // higher class: deliverable
  CHECK(a.PendingInterrupt() == std::optional<uint8_t>(0x51));
  CHECK(a.HasWork());
  // APR: IRR class 5 is above TPR's class, so APR is IRR's class.
  CHECK(Read32(a, apic::kApr) == 0x50u);
  CHECK(a.ArbitrationPriority() == 0x50);
  CHECK(a.AcknowledgeInterrupt() == 0x51);
  CHECK(Read32(a, apic::kPpr) == 0x50u);  // ISR class 5 > TPR class 4
  Write32(a, apic::kEoi, 0);
  CHECK(Read32(a, apic::kPpr) == 0x45u);
  CHECK_FALSE(a.PendingInterrupt().has_value());  // 0x41 still held by TPR
  Write32(a, apic::kTpr, 0);
  CHECK(a.PendingInterrupt() == std::optional<uint8_t>(0x41));
  CHECK(Read32(a, apic::kApr) == 0x40u);
}

TEST_CASE("lapic: ISR nesting and EOI order") {
  ApicSystem sys(1);
  LocalApic& a = sys.apic(0);
  Enable(a);
  a.Accept(Fixed(0x30));
  CHECK(a.AcknowledgeInterrupt() == 0x30);
  CHECK(IsrHas(a, 0x30));
  CHECK_FALSE(IrrHas(a, 0x30));
  // Same-class interrupt waits for the EOI; a higher class nests.
  a.Accept(Fixed(0x35));
  CHECK_FALSE(a.PendingInterrupt().has_value());
  a.Accept(Fixed(0x80));
  CHECK(a.PendingInterrupt() == std::optional<uint8_t>(0x80));
  CHECK(a.AcknowledgeInterrupt() == 0x80);
  CHECK(IsrHas(a, 0x80));
  CHECK(IsrHas(a, 0x30));
  Write32(a, apic::kEoi, 0);  // EOI retires the highest in-service vector
  CHECK_FALSE(IsrHas(a, 0x80));
  CHECK(IsrHas(a, 0x30));
  CHECK_FALSE(a.PendingInterrupt().has_value());
  Write32(a, apic::kEoi, 0);
  CHECK_FALSE(IsrHas(a, 0x30));
  CHECK(a.PendingInterrupt() == std::optional<uint8_t>(0x35));
  // Acknowledge with nothing deliverable yields the spurious vector and leaves ISR alone.
  Write32(a, apic::kTpr, 0xf0);
  CHECK(a.AcknowledgeInterrupt() == 0xff);
  CHECK_FALSE(IsrHas(a, 0x35));
  Write32(a, apic::kEoi, 0);  // EOI with an empty ISR is harmless
}

TEST_CASE("lapic: illegal vectors set ESR with write-then-read semantics") {
  ApicSystem sys(2);
  LocalApic& a = sys.apic(0);
  Enable(a);
  Enable(sys.apic(1));
  Write32(a, apic::kLvtError, 0xfe);
  // Sending vector 5 is refused: "send illegal vector".
  testing::SendIpi(a, 1, testing::kIcrFixed | 0x05);
  CHECK_FALSE(IrrHas(sys.apic(1), 0x05));
  CHECK(Read32(a, apic::kEsr) == 0u);  // not visible before an ESR write
  Write32(a, apic::kEsr, 0);
  CHECK(Read32(a, apic::kEsr) == apic::kEsrSendIllegalVector);
  CHECK(IrrHas(a, 0xfe));  // the LVT error interrupt was raised
  Write32(a, apic::kEsr, 0);
  CHECK(Read32(a, apic::kEsr) == 0u);
  // Receiving vector 3 is refused: "receive illegal vector".
  a.Accept(Fixed(0x03));
  CHECK_FALSE(IrrHas(a, 0x03));
  Write32(a, apic::kEsr, 0);
  CHECK(Read32(a, apic::kEsr) == apic::kEsrReceiveIllegalVector);
}

TEST_CASE("lapic: NMI, ExtINT message and LINT pins") {
  ApicSystem sys(2);
  LocalApic& bsp = sys.apic(0);
  LocalApic& ap = sys.apic(1);

  ApicMessage nmi;
  nmi.delivery_mode = DeliveryMode::kNmi;
  ap.Accept(nmi);
  CHECK(ap.HasWork());  // NMI needs no software enable
  CHECK(ap.TakeNmi());
  CHECK_FALSE(ap.TakeNmi());

  // BSP: LINT0 ExtINT follows the PIC's INTR level.
  CHECK_FALSE(bsp.ExtIntPending());
  bsp.SetLint0(true);
  CHECK(bsp.ExtIntPending());
  CHECK(bsp.HasWork());
  CHECK(sys.kicks(0) == 1);
  bsp.SetLint0(false);
  CHECK_FALSE(bsp.ExtIntPending());
  // The AP's LINT0 is masked.
  ap.SetLint0(true);
  CHECK_FALSE(ap.ExtIntPending());

  // LINT1 as NMI (as Linux programs it): a rising edge makes an NMI.
  Enable(bsp);
  Write32(bsp, apic::kLvtLint1, 4u << 8);
  bsp.SetLint1(true);
  CHECK(bsp.TakeNmi());
  bsp.SetLint1(true);  // no new edge
  CHECK_FALSE(bsp.TakeNmi());

  ApicMessage extint;
  extint.delivery_mode = DeliveryMode::kExtInt;
  ap.Accept(extint);
  CHECK(ap.ExtIntPending());
  ap.AcknowledgeExtInt();
  CHECK_FALSE(ap.ExtIntPending());
}

TEST_CASE("lapic: Reset restores power-on state but keeps the id") {
  ApicSystem sys(2);
  LocalApic& a = sys.apic(1);
  Enable(a);
  Write32(a, apic::kTpr, 0x20);
  Write32(a, apic::kLdr, 0x01000000);
  a.Accept(Fixed(0x50));
  a.Reset();
  CHECK(Read32(a, apic::kId) == 1u << 24);
  CHECK(Read32(a, apic::kSvr) == 0xffu);
  CHECK(Read32(a, apic::kTpr) == 0u);
  CHECK(Read32(a, apic::kLdr) == 0u);
  CHECK_FALSE(IrrHas(a, 0x50));
  CHECK_FALSE(a.HasWork());
}

}  // namespace
}  // namespace coalesce
