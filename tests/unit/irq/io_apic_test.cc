// The IOAPIC: indirect register access, edge and level pins, masking, remote IRR and the EOI broadcast
// that comes back from a local APIC's EOI of a level-triggered vector.
#include "hypervisor/irq/io_apic.h"

#include <catch2/catch.hpp>

#include "tests/unit/irq/irq_test_util.h"

namespace coalesce {
namespace {

using namespace testing;  // NOLINT

constexpr uint64_t kIoRegSel = 0x00;
constexpr uint64_t kIoWin = 0x10;

uint32_t ReadReg(IoApic& io, uint32_t index) {
  Write32(io, kIoRegSel, index);
  return Read32(io, kIoWin);
}
void WriteReg(IoApic& io, uint32_t index, uint32_t value) {
  Write32(io, kIoRegSel, index);
  Write32(io, kIoWin, value);
}
// Programs redirection entry `pin`: low word (vector, mode, trigger, mask...) and destination.
void Program(IoApic& io, uint32_t pin, uint32_t low, uint8_t destination) {
  WriteReg(io, 0x11 + 2 * pin, uint32_t{destination} << 24);
  WriteReg(io, 0x10 + 2 * pin, low);
}

constexpr uint32_t kLevel = 1u << 15;
constexpr uint32_t kMask = 1u << 16;
constexpr uint32_t kRemoteIrr = 1u << 14;

// Two CPUs and an IOAPIC wired to the router, as the machine does it.
struct IoSystem {
  ApicSystem sys{2};
  IoApic io{&sys.router(), 2};
  IoSystem() {
    sys.router().SetIoApic(&io);
    Enable(sys.apic(0));
    Enable(sys.apic(1));
  }
  // Plays the vCPU: take the interrupt into ISR, then EOI it through the APIC page.
  uint8_t TakeAndEoi(int cpu) {
    LocalApic& a = sys.apic(cpu);
    REQUIRE(a.PendingInterrupt().has_value());
    const uint8_t v = a.AcknowledgeInterrupt();
    Write32(a, apic::kEoi, 0);
    return v;
  }
};

TEST_CASE("ioapic: identification registers and reset state") {
  IoSystem s;
  CHECK(ReadReg(s.io, 0x00) == 2u << 24);
  CHECK(ReadReg(s.io, 0x01) == 0x170011u);
  CHECK(ReadReg(s.io, 0x02) == 2u << 24);
  WriteReg(s.io, 0x00, 5u << 24);
  CHECK(ReadReg(s.io, 0x00) == 5u << 24);
  WriteReg(s.io, 0x01, 0);  // read-only
  CHECK(ReadReg(s.io, 0x01) == 0x170011u);
  for (uint32_t pin = 0; pin < 24; ++pin) CHECK(ReadReg(s.io, 0x10 + 2 * pin) == kMask);
  CHECK(ReadReg(s.io, 0x10 + 2 * 24) == 0u);  // past the last entry
  // IOREGSEL reads back; byte access to it works.
  uint8_t sel = 0x13;
  s.io.Write(kIoRegSel, {&sel, 1});
  CHECK(Read32(s.io, kIoRegSel) == 0x13u);
  // Read-only bits of an entry cannot be set by software.
  Program(s.io, 3, 0x30 | kRemoteIrr | (1u << 12) | kMask, 0);
  CHECK(ReadReg(s.io, 0x10 + 2 * 3) == (0x30u | kMask));
  CHECK(ReadReg(s.io, 0x11 + 2 * 3) == 0u);
  WriteReg(s.io, 0x11 + 2 * 3, 0xffffffff);
  CHECK(ReadReg(s.io, 0x11 + 2 * 3) == 0xff000000u);
}

TEST_CASE("ioapic: edge pin delivers once per rising edge, masked edges are lost") {
  IoSystem s;
  Program(s.io, 4, 0x34, 1);
  s.io.SetPin(4, true);
  CHECK(IrrHas(s.sys.apic(1), 0x34));
  CHECK_FALSE(IrrHas(s.sys.apic(0), 0x34));
  CHECK_FALSE(TmrHas(s.sys.apic(1), 0x34));
  CHECK(s.TakeAndEoi(1) == 0x34);
  s.io.SetPin(4, true);  // still high: no new edge
  CHECK_FALSE(IrrHas(s.sys.apic(1), 0x34));
  s.io.SetPin(4, false);
  s.io.SetPin(4, true);
  CHECK(IrrHas(s.sys.apic(1), 0x34));
  CHECK(s.TakeAndEoi(1) == 0x34);

  Program(s.io, 4, 0x34 | kMask, 1);
  s.io.SetPin(4, false);
  s.io.SetPin(4, true);
  Program(s.io, 4, 0x34, 1);  // unmasking does not replay the edge
  CHECK_FALSE(IrrHas(s.sys.apic(1), 0x34));
}

TEST_CASE("ioapic: level pin, remote IRR, EOI broadcast and re-delivery") {
  IoSystem s;
  Program(s.io, 9, 0x39 | kLevel, 0);
  s.io.SetPin(9, true);
  LocalApic& bsp = s.sys.apic(0);
  CHECK(IrrHas(bsp, 0x39));
  CHECK(TmrHas(bsp, 0x39));  // level-triggered: the APIC will broadcast its EOI
  CHECK(ReadReg(s.io, 0x10 + 2 * 9) & kRemoteIrr);

  // While remote IRR is set, nothing more is delivered, however the line moves.
  CHECK(bsp.AcknowledgeInterrupt() == 0x39);
  s.io.SetPin(9, false);
  s.io.SetPin(9, true);
  CHECK_FALSE(IrrHas(bsp, 0x39));

  // EOI with the line still asserted: remote IRR clears and the interrupt comes again.
  Write32(bsp, apic::kEoi, 0);
  CHECK(IrrHas(bsp, 0x39));
  CHECK(ReadReg(s.io, 0x10 + 2 * 9) & kRemoteIrr);

  // The device is serviced (line drops) before the EOI: remote IRR clears, no re-delivery.
  CHECK(bsp.AcknowledgeInterrupt() == 0x39);
  s.io.SetPin(9, false);
  Write32(bsp, apic::kEoi, 0);
  CHECK_FALSE(IrrHas(bsp, 0x39));
  CHECK_FALSE(ReadReg(s.io, 0x10 + 2 * 9) & kRemoteIrr);
}

TEST_CASE("ioapic: an EOI for a vector only clears entries with that vector") {
  IoSystem s;
  Program(s.io, 10, 0x3a | kLevel, 0);
  Program(s.io, 11, 0x3b | kLevel, 0);
  s.io.SetPin(10, true);
  s.io.SetPin(11, true);
  s.io.Eoi(0x3b);
  CHECK(ReadReg(s.io, 0x10 + 2 * 10) & kRemoteIrr);
  s.io.SetPin(11, false);
  s.io.Eoi(0x3b);
  CHECK_FALSE(ReadReg(s.io, 0x10 + 2 * 11) & kRemoteIrr);
  CHECK(ReadReg(s.io, 0x10 + 2 * 10) & kRemoteIrr);
}

TEST_CASE("ioapic: unmasking an asserted level pin delivers it") {
  IoSystem s;
  Program(s.io, 12, 0x3c | kLevel | kMask, 1);
  s.io.SetPin(12, true);
  CHECK_FALSE(IrrHas(s.sys.apic(1), 0x3c));
  Program(s.io, 12, 0x3c | kLevel, 1);
  CHECK(IrrHas(s.sys.apic(1), 0x3c));
  // Switching to edge clears remote IRR.
  Program(s.io, 12, 0x3c, 1);
  CHECK_FALSE(ReadReg(s.io, 0x10 + 2 * 12) & kRemoteIrr);
}

TEST_CASE("ioapic: logical and lowest-priority entries, NMI entries") {
  IoSystem s;
  Write32(s.sys.apic(0), apic::kLdr, 0x01u << 24);
  Write32(s.sys.apic(1), apic::kLdr, 0x02u << 24);
  Program(s.io, 5, 0x45 | (1u << 11), 0x02);  // logical, fixed
  s.io.SetPin(5, true);
  CHECK(IrrHas(s.sys.apic(1), 0x45));
  CHECK_FALSE(IrrHas(s.sys.apic(0), 0x45));
  Write32(s.sys.apic(0), apic::kTpr, 0x80);
  Program(s.io, 6, 0x46 | (1u << 8) | (1u << 11), 0x03);  // logical, lowest priority
  s.io.SetPin(6, true);
  CHECK(IrrHas(s.sys.apic(1), 0x46));
  CHECK_FALSE(IrrHas(s.sys.apic(0), 0x46));
  Program(s.io, 7, (4u << 8) | kLevel, 0);  // NMI programmed as level: delivered, no remote IRR
  s.io.SetPin(7, true);
  CHECK(s.sys.apic(0).TakeNmi());
  CHECK_FALSE(ReadReg(s.io, 0x10 + 2 * 7) & kRemoteIrr);
}

TEST_CASE("ioapic: guest and device mistakes are contained") {
  IoSystem s;
  s.io.SetPin(24, true);
  s.io.SetPin(0xffffffff, true);
  Program(s.io, 1, 0x41 | (3u << 8), 0);  // reserved delivery mode
  s.io.SetPin(1, true);
  CHECK_FALSE(IrrHas(s.sys.apic(0), 0x41));
  uint8_t two[2] = {1, 2};
  s.io.Write(kIoWin, two);  // IOWIN takes 32-bit writes only
  s.io.Write(0x20, two);
  uint8_t out[8];
  s.io.Read(0x40, out);
  CHECK(s.io.anomalies() >= 6);
}

}  // namespace
}  // namespace coalesce
