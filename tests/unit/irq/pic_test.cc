// The 8259A pair through its ports, driven as Linux drives it (arch/x86/kernel/i8259.c): init sequence,
// masks, INTA, specific EOI, OCW3 register reads, spurious IRQ7/IRQ15, ELCR level mode, and the INTR
// output reaching the BSP's LINT0.
#include "hypervisor/irq/pic.h"

#include <catch2/catch.hpp>
#include <vector>

#include "tests/unit/irq/irq_test_util.h"

namespace coalesce {
namespace {

void Out(BusDevice& ports, uint64_t port, uint8_t value) { ports.Write(port, {&value, 1}); }
uint8_t In(BusDevice& ports, uint64_t port) {
  uint8_t value = 0;
  ports.Read(port, {&value, 1});
  return value;
}

struct Pics {
  Pic8259Pair pic;
  BusDevice& master = pic.master_ports();
  BusDevice& slave = pic.slave_ports();
  BusDevice& elcr = pic.elcr_ports();
  std::vector<bool> outputs;  // every INTR change, in order

  Pics() {
    pic.SetOutputCallback([this](bool high) { outputs.push_back(high); });
  }
  // init_8259A(auto_eoi) with vectors 0x30 / 0x38, then the given masks.
  void LinuxInit(uint8_t master_mask, uint8_t slave_mask, bool auto_eoi = false) {
    Out(master, 1, 0xff);
    Out(slave, 1, 0xff);
    Out(master, 0, 0x11);                   // ICW1: edge, cascade, ICW4 needed
    Out(master, 1, 0x30);                   // ICW2: vector base
    Out(master, 1, 0x04);                   // ICW3: slave on IR2
    Out(master, 1, auto_eoi ? 0x03 : 0x01);  // ICW4: 8086 mode (+ auto EOI)
    Out(slave, 0, 0x11);
    Out(slave, 1, 0x38);
    Out(slave, 1, 0x02);  // ICW3: cascade identity
    Out(slave, 1, 0x01);
    Out(master, 1, master_mask);
    Out(slave, 1, slave_mask);
  }
  uint8_t MasterIsr() {
    Out(master, 0, 0x0b);  // OCW3: read ISR
    const uint8_t isr = In(master, 0);
    Out(master, 0, 0x0a);  // back to IRR
    return isr;
  }
  uint8_t SlaveIsr() {
    Out(slave, 0, 0x0b);
    const uint8_t isr = In(slave, 0);
    Out(slave, 0, 0x0a);
    return isr;
  }
};

TEST_CASE("pic: Linux init sequence, masks read back") {
  Pics p;
  p.LinuxInit(0xfb, 0xff);
  CHECK(In(p.master, 1) == 0xfb);
  CHECK(In(p.slave, 1) == 0xff);
  CHECK_FALSE(p.pic.OutputHigh());
  CHECK(p.outputs.empty());
}

TEST_CASE("pic: IRQ to INTA to EOI, and the output reaches the BSP's LINT0") {
  testing::ApicSystem sys(1);
  LocalApic& bsp = sys.apic(0);
  Pic8259Pair pic;
  pic.SetOutputCallback([&bsp](bool high) { bsp.SetLint0(high); });
  BusDevice& master = pic.master_ports();
  Out(master, 0, 0x11);
  Out(master, 1, 0x30);
  Out(master, 1, 0x04);
  Out(master, 1, 0x01);
  Out(master, 1, 0xef);  // only IRQ4 unmasked

  pic.SetIrq(3, true);  // masked
  CHECK_FALSE(pic.OutputHigh());
  pic.SetIrq(4, true);
  CHECK(pic.OutputHigh());
  CHECK(bsp.ExtIntPending());  // LINT0 is ExtINT on the BSP at reset
  CHECK(bsp.HasWork());
  CHECK(sys.kicks(0) == 1);

  CHECK(pic.Acknowledge() == 0x34);
  CHECK_FALSE(pic.OutputHigh());  // in service now
  CHECK_FALSE(bsp.ExtIntPending());
  Out(master, 0, 0x0b);
  CHECK(In(master, 0) == 0x10);  // ISR bit 4
  Out(master, 0, 0x64);          // specific EOI for IRQ4, as mask_and_ack_8259A does
  CHECK(In(master, 0) == 0x00);
  // Edge input: no new request until the line falls and rises again.
  CHECK_FALSE(pic.OutputHigh());
  pic.SetIrq(4, false);
  pic.SetIrq(4, true);
  CHECK(pic.OutputHigh());
}

TEST_CASE("pic: priorities and nesting") {
  Pics p;
  p.LinuxInit(0x00, 0xff);
  p.pic.SetIrq(5, true);
  p.pic.SetIrq(3, true);
  CHECK(p.pic.Acknowledge() == 0x33);  // IRQ3 beats IRQ5
  CHECK_FALSE(p.pic.OutputHigh());     // IRQ5 is lower than the in-service IRQ3
  p.pic.SetIrq(1, true);               // higher than IRQ3: nests
  CHECK(p.pic.OutputHigh());
  CHECK(p.pic.Acknowledge() == 0x31);
  CHECK(p.MasterIsr() == 0x0a);
  Out(p.master, 0, 0x20);  // non-specific EOI retires the highest priority (IRQ1)
  CHECK(p.MasterIsr() == 0x08);
  Out(p.master, 0, 0x20);
  CHECK(p.MasterIsr() == 0x00);
  CHECK(p.pic.Acknowledge() == 0x35);
  // IRR reads (OCW3 default) show nothing pending now.
  CHECK(In(p.master, 0) == 0x00);
}

TEST_CASE("pic: slave IRQ through the cascade") {
  Pics p;
  p.LinuxInit(0xfb, 0xfe);  // cascade and IRQ8 unmasked
  p.pic.SetIrq(8, true);
  CHECK(p.pic.OutputHigh());
  CHECK(p.pic.Acknowledge() == 0x38);
  CHECK(p.MasterIsr() == 0x04);
  CHECK(p.SlaveIsr() == 0x01);
  Out(p.slave, 0, 0x60);   // specific EOI IRQ0 on the slave
  Out(p.master, 0, 0x62);  // then the cascade on the master
  CHECK(p.MasterIsr() == 0x00);
  CHECK(p.SlaveIsr() == 0x00);
  CHECK(p.outputs == std::vector<bool>{true, false});
}

TEST_CASE("pic: spurious IRQ7 and IRQ15") {
  Pics p;
  p.LinuxInit(0x00, 0x00);
  SECTION("request masked between INTR and INTA") {
    p.pic.SetIrq(5, true);
    REQUIRE(p.pic.OutputHigh());
    Out(p.master, 1, 0x20);  // the guest masks IRQ5 with interrupts disabled
    CHECK(p.pic.Acknowledge() == 0x37);
    CHECK(p.MasterIsr() == 0x00);  // a spurious IRQ7 is not in service: Linux checks exactly this
    CHECK(p.pic.spurious_acknowledges() == 1);
  }
  SECTION("level request withdrawn before INTA") {
    Out(p.elcr, 0, 0x20);  // IRQ5 level-triggered
    p.pic.SetIrq(5, true);
    REQUIRE(p.pic.OutputHigh());
    p.pic.SetIrq(5, false);
    CHECK_FALSE(p.pic.OutputHigh());
    CHECK(p.pic.Acknowledge() == 0x37);
    CHECK(p.MasterIsr() == 0x00);
  }
  SECTION("slave request vanishes: IRQ15, with the master's cascade in service") {
    p.pic.SetIrq(10, true);
    REQUIRE(p.pic.OutputHigh());
    // Masking on the slave drops the slave's output, but the master latched the cascade edge.
    Out(p.slave, 1, 0x04);
    CHECK(p.pic.Acknowledge() == 0x3f);
    CHECK(p.SlaveIsr() == 0x00);
    CHECK(p.MasterIsr() == 0x04);
  }
}

TEST_CASE("pic: ELCR level mode keeps requesting while the line is high") {
  Pics p;
  p.LinuxInit(0x00, 0x00);
  Out(p.elcr, 0, 0xff);
  Out(p.elcr, 1, 0xff);
  CHECK(In(p.elcr, 0) == 0xf8);  // IRQ0-2 are always edge
  CHECK(In(p.elcr, 1) == 0xde);  // IRQ8 and IRQ13 too
  p.pic.SetIrq(11, true);
  CHECK(p.pic.Acknowledge() == 0x3b);
  Out(p.slave, 0, 0x63);
  Out(p.master, 0, 0x62);
  CHECK(p.pic.OutputHigh());  // still asserted: requested again
  CHECK(p.pic.Acknowledge() == 0x3b);
  p.pic.SetIrq(11, false);
  Out(p.slave, 0, 0x63);
  Out(p.master, 0, 0x62);
  CHECK_FALSE(p.pic.OutputHigh());
}

TEST_CASE("pic: auto-EOI, poll mode and bad input numbers") {
  Pics p;
  p.LinuxInit(0x00, 0xff, /*auto_eoi=*/true);
  p.pic.SetIrq(6, true);
  CHECK(p.pic.Acknowledge() == 0x36);
  CHECK(p.MasterIsr() == 0x00);  // auto-EOI: never in service

  p.pic.SetIrq(3, true);
  Out(p.master, 0, 0x0c);         // OCW3 poll
  CHECK(In(p.master, 0) == 0x83);  // the read is the acknowledge
  CHECK_FALSE(p.pic.OutputHigh());
  Out(p.master, 0, 0x0c);
  CHECK(In(p.master, 0) == 0x00);

  p.pic.SetIrq(2, true);
  p.pic.SetIrq(16, true);
  CHECK(p.pic.anomalies() == 2);
  CHECK_FALSE(p.pic.OutputHigh());
}

TEST_CASE("pic: special mask mode lets lower priorities through a masked in-service input") {
  Pics p;
  p.LinuxInit(0x00, 0xff);
  p.pic.SetIrq(3, true);
  CHECK(p.pic.Acknowledge() == 0x33);
  p.pic.SetIrq(5, true);
  CHECK_FALSE(p.pic.OutputHigh());  // IRQ3 in service blocks IRQ5
  Out(p.master, 1, 0x08);           // mask IRQ3
  Out(p.master, 0, 0x68);           // OCW3: set special mask mode
  CHECK(p.pic.OutputHigh());
  CHECK(p.pic.Acknowledge() == 0x35);
  Out(p.master, 0, 0x48);  // clear special mask mode
  CHECK(p.MasterIsr() == 0x28);
}

TEST_CASE("pic: rotation commands") {
  Pics p;
  p.LinuxInit(0x00, 0xff);
  Out(p.master, 0, 0xc4);  // set priority: IR4 lowest, so IR5 is now the highest
  p.pic.SetIrq(3, true);
  p.pic.SetIrq(6, true);
  CHECK(p.pic.Acknowledge() == 0x36);
  Out(p.master, 0, 0x20);
  CHECK(p.pic.Acknowledge() == 0x33);
}

}  // namespace
}  // namespace coalesce
