// IPIs end to end: an ICR write on one LocalApic builds an ApicMessage, the LocalInterruptRouter resolves
// the destination and the target LocalApics accept it.
#include <catch2/catch.hpp>

#include "tests/unit/irq/irq_test_util.h"

namespace coalesce {
namespace {

using namespace testing;  // NOLINT: test helpers and ICR constants

// Four APICs, all software-enabled; returns the system.
struct FourCpus {
  ApicSystem sys{4};
  FourCpus() {
    for (int i = 0; i < 4; ++i) Enable(sys.apic(i));
  }
  // Which APICs have `vector` in IRR, as a bit mask.
  int Receivers(uint8_t vector) {
    int mask = 0;
    for (int i = 0; i < 4; ++i) mask |= IrrHas(sys.apic(i), vector) ? 1 << i : 0;
    return mask;
  }
};

TEST_CASE("icr: fixed IPI, physical destination") {
  FourCpus cpus;
  SendIpi(cpus.sys.apic(0), 2, kIcrFixed | 0x41);
  CHECK(cpus.Receivers(0x41) == 0b0100);
  CHECK(cpus.sys.kicks(2) == 1);
  CHECK(cpus.sys.kicks(1) == 0);
  // Delivery status reads 0 (idle) right after the send; the rest of ICR reads back.
  CHECK(Read32(cpus.sys.apic(0), apic::kIcrLow) == 0x41u);
  CHECK(Read32(cpus.sys.apic(0), apic::kIcrHigh) == 2u << 24);
  CHECK(cpus.sys.apic(2).PendingInterrupt() == std::optional<uint8_t>(0x41));
}

TEST_CASE("icr: physical broadcast 0xff and a missing id") {
  FourCpus cpus;
  SendIpi(cpus.sys.apic(1), 0xff, kIcrFixed | 0x42);
  CHECK(cpus.Receivers(0x42) == 0b1111);
  const uint64_t before = cpus.sys.router().undeliverable();
  SendIpi(cpus.sys.apic(1), 9, kIcrFixed | 0x43);
  CHECK(cpus.Receivers(0x43) == 0);
  CHECK(cpus.sys.router().undeliverable() == before + 1);
}

TEST_CASE("icr: shorthands self, all-including-self, all-excluding-self") {
  FourCpus cpus;
  // The destination field is ignored with a shorthand.
  SendIpi(cpus.sys.apic(3), 0, kIcrSelf | 0x50);
  CHECK(cpus.Receivers(0x50) == 0b1000);
  SendIpi(cpus.sys.apic(3), 0, kIcrAllIncludingSelf | 0x51);
  CHECK(cpus.Receivers(0x51) == 0b1111);
  SendIpi(cpus.sys.apic(3), 0, kIcrAllExcludingSelf | 0x52);
  CHECK(cpus.Receivers(0x52) == 0b0111);
}

TEST_CASE("icr: logical flat and cluster destinations") {
  FourCpus cpus;
  SECTION("flat") {
    for (int i = 0; i < 4; ++i) Write32(cpus.sys.apic(i), apic::kLdr, (1u << i) << 24);
    SendIpi(cpus.sys.apic(0), 0x0a, kIcrLogical | 0x60);  // bits 1 and 3
    CHECK(cpus.Receivers(0x60) == 0b1010);
  }
  SECTION("cluster") {
    // APICs 0,1 in cluster 1 (members 1, 2); APICs 2,3 in cluster 2 (members 1, 2).
    const uint32_t ldr[4] = {0x11, 0x12, 0x21, 0x22};
    for (int i = 0; i < 4; ++i) {
      Write32(cpus.sys.apic(i), apic::kDfr, 0x0fffffff);
      Write32(cpus.sys.apic(i), apic::kLdr, ldr[i] << 24);
    }
    SendIpi(cpus.sys.apic(0), 0x22, kIcrLogical | 0x61);
    CHECK(cpus.Receivers(0x61) == 0b1000);
    SendIpi(cpus.sys.apic(0), 0x13, kIcrLogical | 0x62);
    CHECK(cpus.Receivers(0x62) == 0b0011);
    SendIpi(cpus.sys.apic(0), 0xff, kIcrLogical | 0x63);  // broadcast
    CHECK(cpus.Receivers(0x63) == 0b1111);
  }
}

TEST_CASE("icr: lowest priority picks the lowest arbitration priority") {
  FourCpus cpus;
  for (int i = 0; i < 4; ++i) Write32(cpus.sys.apic(i), apic::kLdr, 0x01u << 24);  // all in group 1
  Write32(cpus.sys.apic(0), apic::kTpr, 0x40);
  Write32(cpus.sys.apic(1), apic::kTpr, 0x30);
  Write32(cpus.sys.apic(2), apic::kTpr, 0x10);
  Write32(cpus.sys.apic(3), apic::kTpr, 0x20);
  SendIpi(cpus.sys.apic(0), 0x01, kIcrLowest | kIcrLogical | 0x70);
  CHECK(cpus.Receivers(0x70) == 0b0100);
  // Ties rotate: with equal priority, repeated messages do not all land on one APIC.
  for (int i = 0; i < 4; ++i) Write32(cpus.sys.apic(i), apic::kTpr, 0);
  int seen = 0;
  for (uint8_t v = 0x80; v < 0x88; ++v) {
    SendIpi(cpus.sys.apic(0), 0x01, kIcrLowest | kIcrLogical | v);
    const int r = cpus.Receivers(v);
    CHECK((r & (r - 1)) == 0);  // exactly one receiver
    CHECK(r != 0);
    seen |= r;
  }
  CHECK((seen & (seen - 1)) != 0);  // more than one APIC took a turn
  // A software-disabled APIC is never chosen while an enabled one matches.
  Write32(cpus.sys.apic(1), apic::kSvr, 0xff);
  for (uint8_t v = 0x90; v < 0x98; ++v) {
    SendIpi(cpus.sys.apic(0), 0x01, kIcrLowest | kIcrLogical | v);
    CHECK((cpus.Receivers(v) & 0b0010) == 0);
    CHECK(cpus.Receivers(v) != 0);
  }
}

TEST_CASE("icr: NMI IPI") {
  FourCpus cpus;
  SendIpi(cpus.sys.apic(0), 3, kIcrNmi);
  CHECK(cpus.sys.apic(3).TakeNmi());
  CHECK_FALSE(cpus.sys.apic(2).TakeNmi());
}

TEST_CASE("icr: INIT assert, INIT de-assert and SIPI, as Linux wakes an AP") {
  ApicSystem sys(2);
  LocalApic& bsp = sys.apic(0);
  LocalApic& ap = sys.apic(1);
  Enable(bsp);
  // Fresh from power-on an AP takes one SIPI (hardware's wait-for-SIPI state); the BSP never does.
  SendIpi(ap, 0, kIcrStartup | 0x77);
  CHECK_FALSE(bsp.HasWork());
  CHECK_FALSE(bsp.TakeStartup().has_value());
  SendIpi(bsp, 1, kIcrStartup | 0x99);
  SendIpi(bsp, 1, kIcrStartup | 0x98);
  CHECK(ap.TakeStartup() == std::optional<uint8_t>(0x99));
  // Running now: a SIPI without a new INIT is ignored.
  SendIpi(bsp, 1, kIcrStartup | 0x9a);
  CHECK_FALSE(ap.HasWork());
  CHECK_FALSE(ap.TakeStartup().has_value());

  SendIpi(bsp, 1, kIcrInit | kIcrLevel | kIcrAssert);
  CHECK(ap.HasWork());
  SendIpi(bsp, 1, kIcrInit | kIcrLevel);  // level de-assert: no second INIT
  // The SIPI may arrive before the AP's thread took the INIT; it must not be lost.
  SendIpi(bsp, 1, kIcrStartup | 0x9a);
  CHECK_FALSE(ap.TakeStartup().has_value());  // INIT first
  CHECK(ap.TakeInit());
  CHECK_FALSE(ap.TakeInit());
  SendIpi(bsp, 1, kIcrStartup | 0x9b);  // the second SIPI of the pair is ignored
  CHECK(ap.TakeStartup() == std::optional<uint8_t>(0x9a));
  CHECK_FALSE(ap.TakeStartup().has_value());
  CHECK_FALSE(ap.HasWork());
  CHECK(sys.kicks(1) >= 2);
}

TEST_CASE("icr: INIT resets the target APIC's registers") {
  ApicSystem sys(2);
  LocalApic& ap = sys.apic(1);
  Enable(ap);
  Write32(ap, apic::kTpr, 0x30);
  ap.Accept(ApicMessage{.vector = 0x44});
  Enable(sys.apic(0));
  SendIpi(sys.apic(0), 1, kIcrInit | kIcrLevel | kIcrAssert);
  CHECK(ap.TakeInit());
  CHECK(Read32(ap, apic::kSvr) == 0xffu);
  CHECK(Read32(ap, apic::kTpr) == 0u);
  CHECK_FALSE(IrrHas(ap, 0x44));
  CHECK(Read32(ap, apic::kId) == 1u << 24);
}

TEST_CASE("icr: reserved delivery modes are not sent") {
  FourCpus cpus;
  const uint64_t before = cpus.sys.apic(0).anomalies();
  SendIpi(cpus.sys.apic(0), 1, (3u << 8) | 0x40);
  SendIpi(cpus.sys.apic(0), 1, (7u << 8) | 0x40);
  CHECK(cpus.Receivers(0x40) == 0);
  CHECK(cpus.sys.apic(0).anomalies() == before + 2);
}

// A router for a node that holds only some vCPUs: records what it would forward.
class RecordingRemoteRouter final : public LocalInterruptRouter {
 public:
  std::vector<ApicMessage> forwarded;

 protected:
  bool HasRemoteApics() const override { return true; }
  void ForwardToRemote(const ApicMessage& msg) override { forwarded.push_back(msg); }
};

TEST_CASE("router: remote hook sees what may address other nodes") {
  TimerService timers;
  RecordingRemoteRouter router;
  LocalApic a(0, true, &router, &timers, nullptr);
  LocalApic b(1, false, &router, &timers, nullptr);
  REQUIRE(router.AddApic(&a).ok());
  REQUIRE(router.AddApic(&b).ok());
  REQUIRE_FALSE(router.AddApic(&b).ok());
  Enable(a);
  Enable(b);
  SendIpi(a, 1, kIcrFixed | 0x40);  // local id: not forwarded
  CHECK(router.forwarded.empty());
  SendIpi(a, 5, kIcrFixed | 0x41);  // id 5 lives elsewhere
  REQUIRE(router.forwarded.size() == 1);
  CHECK(router.forwarded[0].destination == 5);
  SendIpi(a, 0, kIcrSelf | 0x42);  // never leaves the node
  CHECK(router.forwarded.size() == 1);
  SendIpi(a, 0, kIcrAllExcludingSelf | 0x43);  // local b gets it, and so may remote APICs
  CHECK(IrrHas(b, 0x43));
  CHECK(router.forwarded.size() == 2);
  Write32(a, apic::kLdr, 0x01u << 24);
  SendIpi(b, 0x01, kIcrLowest | kIcrLogical | 0x44);  // a local match takes it: no forward
  CHECK(IrrHas(a, 0x44));
  CHECK(router.forwarded.size() == 2);
  // Messages from another node are delivered here and never forwarded back.
  router.DeliverLocally(ApicMessage{.vector = 0x45, .destination = 0xff});
  CHECK(IrrHas(a, 0x45));
  CHECK(IrrHas(b, 0x45));
  CHECK(router.forwarded.size() == 2);
}

}  // namespace
}  // namespace coalesce
