// The hotplug controller driven the way the DSDT's AML drives it (hypervisor/boot/acpi_hotplug_aml.cc): byte
// reads of the bitmaps, id writes to the acknowledge and eject registers; as the CPU controller and as the
// memory slots' one.
#include "devmodel/hotplug_controller.h"

#include <catch2/catch.hpp>
#include <thread>

#include "absl/strings/match.h"
#include "tests/unit/devmodel/recording_irq_sink.h"

namespace coalesce {
namespace {

namespace p = platform;
constexpr uint32_t kGsi = p::kHotplugIrq;

bool Bit(HotplugController& dev, uint16_t bitmap, uint32_t cpu) {
  return (Inb(dev, bitmap + cpu / 8) >> (cpu % 8)) & 1;
}

TEST_CASE("CPU hotplug: the CPUs present at boot, and nothing pending") {
  RecordingIrqSink irq;
  HotplugController dev(kCpuHotplugKind, &irq, kGsi, 12, 2);
  CHECK(Inb(dev, p::kHotplugPresentOffset) == 0x03);
  for (uint16_t off = 1; off < 0x60; ++off) CHECK(Inb(dev, off) == 0);
  CHECK(dev.PresentSlots() == std::vector<uint32_t>{0, 1});
  CHECK(irq.events().empty());
}

TEST_CASE("CPU hotplug: plug sets present and insert pending, pulses the line; the guest acknowledges") {
  RecordingIrqSink irq;
  HotplugController dev(kCpuHotplugKind, &irq, kGsi, 12, 2);
  REQUIRE(dev.Plug(9).ok());
  CHECK(Bit(dev, p::kHotplugPresentOffset, 9));
  CHECK(Bit(dev, p::kHotplugInsertOffset, 9));
  CHECK(irq.rising_edges(kGsi) == 1);
  CHECK(!irq.level(kGsi));  // an edge: high then low
  Outb(dev, p::kHotplugAckInsertOffset, 9);
  CHECK(!Bit(dev, p::kHotplugInsertOffset, 9));
  CHECK(Bit(dev, p::kHotplugPresentOffset, 9));
  CHECK(dev.Present(9));
  CHECK(dev.Plug(9).code() == absl::StatusCode::kFailedPrecondition);
  CHECK(dev.Plug(0).code() == absl::StatusCode::kInvalidArgument);
  CHECK(dev.Plug(12).code() == absl::StatusCode::kInvalidArgument);
  CHECK(irq.rising_edges(kGsi) == 1);  // refused plugs tell the guest nothing
}

TEST_CASE("hotplug: a slot's proximity domain, as its _PXM reads it: select the slot, read the domain") {
  RecordingIrqSink irq;
  HotplugController dev(kMemoryHotplugKind, &irq, kGsi, 6, 0);
  auto pxm = [&dev](uint8_t slot) {
    Outb(dev, p::kHotplugSelectOffset, slot);
    return Inb(dev, p::kHotplugDomainOffset);
  };
  CHECK(pxm(0) == 0);  // home's until the VMM says otherwise
  CHECK(pxm(5) == 0);
  REQUIRE(dev.SetDomain(3, 2).ok());
  REQUIRE(dev.SetDomain(4, 3).ok());
  CHECK(pxm(3) == 2);
  CHECK(pxm(4) == 3);
  CHECK(pxm(2) == 0);
  CHECK(dev.domain(3) == 2);
  CHECK(dev.SetDomain(6, 1).code() == absl::StatusCode::kInvalidArgument);  // not possible
  // Selecting a slot that is not possible is ignored and counted; the last good selection stands.
  const uint64_t ignored = dev.ignored_writes();
  Outb(dev, p::kHotplugSelectOffset, 3);
  Outb(dev, p::kHotplugSelectOffset, 200);
  CHECK(Inb(dev, p::kHotplugDomainOffset) == 2);
  CHECK(dev.ignored_writes() == ignored + 1);
  CHECK(Inb(dev, p::kHotplugSelectOffset) == 0);  // write-only
  CHECK(irq.events().empty());                    // setting a domain tells the guest nothing until a plug
}

TEST_CASE("CPU hotplug: unplug is a request the guest answers by ejecting") {
  RecordingIrqSink irq;
  HotplugController dev(kCpuHotplugKind, &irq, kGsi, 4, 4);
  CHECK(dev.RequestUnplug(2).ok());
  CHECK(Bit(dev, p::kHotplugRemoveOffset, 2));
  CHECK(irq.rising_edges(kGsi) == 1);
  CHECK(dev.AwaitEjected(2, absl::Milliseconds(20)).code() == absl::StatusCode::kDeadlineExceeded);
  Outb(dev, p::kHotplugAckRemoveOffset, 2);
  CHECK(!Bit(dev, p::kHotplugRemoveOffset, 2));
  CHECK(dev.Present(2));  // acknowledged, not yet offline in the guest
  std::thread guest([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    Outb(dev, p::kHotplugEjectOffset, 2);  // _EJ0
  });
  CHECK(dev.AwaitEjected(2, absl::Seconds(10)).ok());
  guest.join();
  CHECK(!dev.Present(2));
  CHECK(Inb(dev, p::kHotplugPresentOffset) == 0x0B);
  CHECK(dev.RequestUnplug(2).code() == absl::StatusCode::kFailedPrecondition);
  // And back: the same CPU plugged again.
  CHECK(dev.Plug(2).ok());
  CHECK(Inb(dev, p::kHotplugPresentOffset) == 0x0F);
}

TEST_CASE("CPU hotplug: a stopping VM ends every wait for the guest") {
  RecordingIrqSink irq;
  HotplugController dev(kCpuHotplugKind, &irq, kGsi, 4, 2);
  REQUIRE(dev.RequestUnplug(1).ok());
  REQUIRE(dev.Plug(3).ok());
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    dev.CancelWaits();
  });
  const absl::Time start = absl::Now();
  absl::Status ejected = dev.AwaitEjected(1, absl::Seconds(30));  // the guest never ejects it
  stopper.join();
  CHECK(ejected.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(absl::Now() - start < absl::Seconds(20));
  CHECK(dev.AwaitInsertTaken(3, absl::Seconds(30)).code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("CPU hotplug: what a guest may write wrong is ignored and counted") {
  RecordingIrqSink irq;
  HotplugController dev(kCpuHotplugKind, &irq, kGsi, 4, 2);
  Outb(dev, p::kHotplugEjectOffset, 0);    // the bootstrap processor never goes
  Outb(dev, p::kHotplugEjectOffset, 3);    // not present
  Outb(dev, p::kHotplugEjectOffset, 200);  // not possible
  Outb(dev, p::kHotplugAckInsertOffset, 77);
  Outb(dev, 0x05, 0xFF);  // a read-only bitmap
  CHECK(dev.ignored_writes() == 5);
  CHECK(dev.PresentSlots() == std::vector<uint32_t>{0, 1});
  // A wide access spans the registers byte by byte, as the bus hands it over.
  uint8_t wide[4] = {};
  dev.Read(p::kHotplugPresentOffset, wide);
  CHECK(wide[0] == 0x03);
  CHECK(dev.Present(0));
}

TEST_CASE("CPU hotplug: at most 256 CPUs, however many are asked for") {
  RecordingIrqSink irq;
  HotplugController dev(kCpuHotplugKind, &irq, kGsi, 1000, 1);
  CHECK(dev.possible() == p::kHotplugMaxSlots);
  CHECK(dev.Plug(255).ok());
  CHECK(Bit(dev, p::kHotplugPresentOffset, 255));
}

TEST_CASE("memory hotplug: every slot removable, none present at boot, errors name memory slots") {
  RecordingIrqSink irq;
  HotplugController dev(kMemoryHotplugKind, &irq, kGsi, 8, 0);
  CHECK(dev.name() == "memory-hotplug");
  CHECK(dev.PresentSlots().empty());
  REQUIRE(dev.Plug(0).ok());  // slot 0 is an ordinary slot here, unlike CPU 0
  CHECK(Bit(dev, p::kHotplugInsertOffset, 0));
  Outb(dev, p::kHotplugAckInsertOffset, 0);
  CHECK(!Bit(dev, p::kHotplugInsertOffset, 0));
  absl::Status twice = dev.Plug(0);
  CHECK(twice.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(twice.message() == "memory slot 0 is present already");
  absl::Status beyond = dev.Plug(8);
  CHECK(beyond.message() ==
        "memory slot 8 is not possible in this guest (memory slots 0-7; coalesce run --max-memory)");
  REQUIRE(dev.RequestUnplug(0).ok());
  Outb(dev, p::kHotplugAckRemoveOffset, 0);
  Outb(dev, p::kHotplugEjectOffset, 0);  // _EJ0 of slot 0: allowed for memory
  CHECK(dev.AwaitEjected(0, absl::Seconds(1)).ok());
  CHECK(dev.PresentSlots().empty());
  CHECK(dev.ignored_writes() == 0);
  absl::Status slow = dev.AwaitInsertTaken(1, absl::Milliseconds(1));  // never plugged: no insert pending
  CHECK(slow.ok());
  REQUIRE(dev.Plug(1).ok());
  slow = dev.AwaitInsertTaken(1, absl::Milliseconds(10));
  CHECK(slow.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(absl::StrContains(slow.message(), "CONFIG_ACPI_HOTPLUG_MEMORY"));
}

TEST_CASE("CPU hotplug: CPU 0 is always present, said so") {
  RecordingIrqSink irq;
  HotplugController dev(kCpuHotplugKind, &irq, kGsi, 4, 1);
  CHECK(dev.Plug(0).message() == "CPU 0 is always present");
  CHECK(dev.name() == "cpu-hotplug");
}

}  // namespace
}  // namespace coalesce
