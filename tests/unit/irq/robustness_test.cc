// Whatever a guest writes must never crash or hang the VMM: drive every controller with a long, seeded
// random stream of accesses and line changes, then check the controllers still work normally.
#include <catch2/catch.hpp>
#include <random>

#include "hypervisor/irq/io_apic.h"
#include "hypervisor/irq/pic.h"
#include "tests/unit/irq/irq_test_util.h"

namespace coalesce {
namespace {

using namespace testing;  // NOLINT

TEST_CASE("robustness: random guest accesses to every controller") {
  ApicSystem sys(3);
  IoApic io(&sys.router());
  sys.router().SetIoApic(&io);
  Pic8259Pair pic;
  pic.SetOutputCallback([&sys](bool high) { sys.apic(0).SetLint0(high); });

  std::mt19937_64 rng(20240601);
  auto pick = [&rng](uint64_t n) { return rng() % n; };
  uint8_t buf[8];
  for (int i = 0; i < 200'000; ++i) {
    const size_t size = std::array<size_t, 4>{1, 2, 4, 8}[pick(4)];
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    std::span<uint8_t> data(buf, size);
    LocalApic& apic = sys.apic(static_cast<int>(pick(3)));
    switch (pick(10)) {
      case 0: apic.MmioRead(pick(0x1100), data); break;
      case 1: apic.MmioWrite(pick(0x1100), data); break;
      case 2: apic.MmioWrite(pick(0x40) << 4, std::span<const uint8_t>(buf, 4)); break;  // real registers
      case 3: io.Write(pick(0x48), data); break;
      case 4: io.Read(pick(0x48), data); break;
      case 5: io.SetPin(static_cast<uint32_t>(pick(30)), pick(2) != 0); break;
      case 6: pic.SetIrq(static_cast<uint32_t>(pick(18)), pick(2) != 0); break;
      case 7: {
        BusDevice* windows[] = {&pic.master_ports(), &pic.slave_ports(), &pic.elcr_ports()};
        BusDevice* w = windows[pick(3)];
        pick(2) ? w->Write(pick(3), data) : w->Read(pick(3), data);
        break;
      }
      case 8:
        // The vCPU side, interleaved as a vCPU loop would.
        if (apic.PendingInterrupt()) apic.AcknowledgeInterrupt();
        if (apic.ExtIntPending()) {
          pic.Acknowledge();
          apic.AcknowledgeExtInt();
        }
        apic.TakeNmi();
        apic.TakeInit();
        apic.TakeStartup();
        break;
      default: {
        ApicMessage msg;
        msg.vector = static_cast<uint8_t>(rng());
        msg.delivery_mode = static_cast<DeliveryMode>(pick(8));
        msg.destination_mode = static_cast<DestinationMode>(pick(2));
        msg.destination = static_cast<uint8_t>(rng());
        msg.shorthand = static_cast<DestinationShorthand>(pick(4));
        msg.level_triggered = pick(2) != 0;
        msg.level_assert = pick(2) != 0;
        msg.source_apic_id = static_cast<uint32_t>(pick(300));
        sys.router().Deliver(msg);
        break;
      }
    }
  }

  // Everything still works: reset and run one IPI and one PIC interrupt end to end.
  for (int i = 0; i < 3; ++i) {
    Write32(sys.apic(i), apic::kTimerInitialCount, 0);
    sys.apic(i).Reset();
  }
  Enable(sys.apic(0));
  Enable(sys.apic(1));
  SendIpi(sys.apic(0), 1, 0x40);
  CHECK(sys.apic(1).PendingInterrupt() == std::optional<uint8_t>(0x40));
  pic.Reset();
  BusDevice& master = pic.master_ports();
  for (uint8_t v : {0x11, 0x30, 0x04, 0x01, 0x00}) {
    const uint8_t port = v == 0x11 ? 0 : 1;
    master.Write(port, {&v, 1});
  }
  pic.SetIrq(1, false);
  pic.SetIrq(1, true);
  CHECK(pic.OutputHigh());
  CHECK(pic.Acknowledge() == 0x31);
}

}  // namespace
}  // namespace coalesce
