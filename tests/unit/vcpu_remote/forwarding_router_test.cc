// The forwarding router's part of moving a vCPU (vcpu_remote/forwarding_router.h): at the home, every
// interrupt that may address a vCPU in transit reaches it exactly once, whichever node sent it and whenever,
// and a node a vCPU just moved to gets back, for that vCPU alone, what it sent before it confirmed the
// arrival. Real LocalApics on real routers; the sends are recorded.
#include "vcpu_remote/forwarding_router.h"

#include <catch2/catch.hpp>

#include <utility>
#include <vector>

#include "tests/unit/irq/irq_test_util.h"

namespace coalesce {
namespace {

using namespace testing;  // NOLINT

struct Sent {
  uint16_t node;
  uint8_t vector;
};

// The home's router of a VM with vCPU 0 at home, vCPU 1 on node 1 and vCPU 2 on node 2.
struct Home {
  Home()
      : router(0, {0, 1, 2}, [this](uint16_t node, const ApicMessage& m) { sent.push_back({node, m.vector}); },
               nullptr,
               [this](uint16_t node, uint32_t apic, const ApicMessage& m) {
                 directed.push_back({node, m.vector});
                 directed_apic.push_back(apic);
               }),
        apic0(0, true, &router, &timers, [] {}),
        apic1(1, false, &router, &timers, [] {}) {
    REQUIRE(router.AddApic(&apic0).ok());
    Enable(apic0);
  }
  TimerService timers;
  std::vector<Sent> sent, directed;
  std::vector<uint32_t> directed_apic;
  ForwardingInterruptRouter router;
  LocalApic apic0, apic1;  // apic1: vCPU 1's APIC at home, registered only while it runs here
};

ApicMessage Physical(uint8_t dest, uint8_t vector, uint32_t source = 0) {
  return ApicMessage{.vector = vector, .destination = dest, .source_apic_id = source};
}
ApicMessage Logical(uint8_t mask, uint8_t vector, uint32_t source = 0) {
  return ApicMessage{.vector = vector, .destination_mode = DestinationMode::kLogical, .destination = mask,
                     .source_apic_id = source};
}

TEST_CASE("moving home: what may address the vCPU in transit is queued and replayed onto its APIC once") {
  Home h;
  bool evicted = false;
  REQUIRE(h.router.ExpectArrival(1, 1, [&] {
    evicted = true;
    return absl::OkStatus();
  }).ok());
  CHECK(evicted);
  CHECK(h.router.NodeOf(1) == ForwardingInterruptRouter::kInTransit);

  // From node 1 before it detached the vCPU: its own copy of the APIC took it; relayed to node 2 only.
  h.router.DeliverFromNode(1, Logical(0x02, 0x30, 1));
  CHECK(h.router.queued_in_transit() == 0);
  // From the home: a physical IPI to vCPU 1 goes nowhere now, it waits.
  h.sent.clear();
  h.router.Deliver(Physical(1, 0x31));
  CHECK(h.sent.empty());
  // From node 2: a logical message for flat id 0x02 (vCPU 1's, once its LDR is back) and one for 0x04.
  h.router.DeliverFromNode(2, Logical(0x02, 0x32, 2));
  h.router.DeliverFromNode(2, Logical(0x04, 0x33, 2));
  h.router.SourceDetached(1);
  // From node 1 after it detached: queued too.
  h.router.DeliverFromNode(1, Physical(1, 0x34, 1));
  CHECK(h.router.queued_in_transit() == 4);

  // The state arrives: LDR flat 0x02 (as its guest set it), software-enabled.
  Enable(h.apic1);
  Write32(h.apic1, apic::kDfr, 0xffffffff);
  Write32(h.apic1, apic::kLdr, 0x02000000);
  REQUIRE(h.router.Attach(&h.apic1, nullptr).ok());
  CHECK(h.router.NodeOf(1) == 0);
  CHECK(!IrrHas(h.apic1, 0x30));  // taken on node 1 before the move
  CHECK(IrrHas(h.apic1, 0x31));
  CHECK(IrrHas(h.apic1, 0x32));
  CHECK(!IrrHas(h.apic1, 0x33));  // its logical destination is not vCPU 1's
  CHECK(IrrHas(h.apic1, 0x34));
  // From now on it is an ordinary local APIC.
  h.router.DeliverFromNode(2, Physical(1, 0x35, 2));
  CHECK(IrrHas(h.apic1, 0x35));
  CHECK(h.router.queued_in_transit() == 4);
}

TEST_CASE("moving out: the new node gets back, for the vCPU alone, what it sent before confirming") {
  Home h;
  // vCPU 1 starts on node 1 in this map: bring it home first.
  REQUIRE(h.router.ExpectArrival(1, 1, nullptr).ok());
  h.router.SourceDetached(1);
  REQUIRE(h.router.Attach(&h.apic1, nullptr).ok());
  CHECK(h.router.NodeOf(1) == 0);

  bool state_sent = false;
  REQUIRE(h.router.Detach(1, 2, [&] {
    state_sent = true;
    return absl::OkStatus();
  }).ok());
  CHECK(state_sent);
  CHECK(h.router.NodeOf(1) == 2);
  h.sent.clear();
  h.router.Deliver(Physical(1, 0x40));  // the home's messages follow the state to node 2
  REQUIRE(h.sent.size() == 1);
  CHECK(h.sent[0].node == 2);
  h.router.DeliverFromNode(2, Physical(1, 0x41, 2));  // node 2 sent it while vCPU 1 was not there yet
  h.router.DeliverFromNode(2, Physical(0, 0x42, 2));  // for vCPU 0: not sent back
  REQUIRE(h.directed.size() == 1);
  CHECK(h.directed[0].node == 2);
  CHECK(h.directed[0].vector == 0x41);
  CHECK(h.directed_apic[0] == 1);
  CHECK(IrrHas(h.apic0, 0x42));
  h.router.ArrivalConfirmed(1);
  h.router.DeliverFromNode(2, Physical(1, 0x43, 2));  // node 2 delivers its own now
  CHECK(h.directed.size() == 1);
  CHECK(h.router.sent_directed() == 1);
}

TEST_CASE("moving home: an eviction that cannot be sent changes nothing") {
  Home h;
  auto st = h.router.ExpectArrival(1, 1, [] { return absl::UnavailableError("node 1 gone"); });
  CHECK(absl::IsUnavailable(st));
  CHECK(h.router.NodeOf(1) == 1);
  h.sent.clear();
  h.router.Deliver(Physical(1, 0x50));
  REQUIRE(h.sent.size() == 1);
  CHECK(h.sent[0].node == 1);
  CHECK(h.router.queued_in_transit() == 0);
  CHECK(absl::IsFailedPrecondition(h.router.ExpectArrival(2, 1, nullptr)));  // vCPU 2 is not on node 1
}

TEST_CASE("a node that left gets no more interrupts") {
  Home h;
  h.router.RemoveNode(2);
  h.sent.clear();
  h.router.Deliver(Logical(0xff, 0x60));
  REQUIRE(h.sent.size() == 1);
  CHECK(h.sent[0].node == 1);
}

TEST_CASE("which messages may address an APIC whose logical destination is unknown") {
  using R = LocalInterruptRouter;
  CHECK(R::MayAddressApic(Physical(3, 0x30), 3));
  CHECK(!R::MayAddressApic(Physical(2, 0x30), 3));
  CHECK(R::MayAddressApic(Physical(0xff, 0x30), 3));
  CHECK(R::MayAddressApic(Logical(0x01, 0x30), 3));
  ApicMessage others{.vector = 0x30, .shorthand = DestinationShorthand::kAllExcludingSelf, .source_apic_id = 3};
  CHECK(!R::MayAddressApic(others, 3));
  CHECK(R::MayAddressApic(others, 4));
  ApicMessage self{.vector = 0x30, .shorthand = DestinationShorthand::kSelf, .source_apic_id = 3};
  CHECK(R::MayAddressApic(self, 3));
  CHECK(!R::MayAddressApic(self, 4));
}

}  // namespace
}  // namespace coalesce
