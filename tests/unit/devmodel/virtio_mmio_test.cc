// The virtio-mmio transport's registers as a driver sees them (virtio 1.2, 4.2.2), against a recording device.
#include <catch2/catch.hpp>

#include <memory>

#include "devmodel/virtio/virtio_mmio.h"
#include "recording_irq_sink.h"
#include "virtio_test_driver.h"

using namespace coalesce;
using namespace coalesce::virtio;

namespace {

struct Record {
  int activations = 0, resets = 0;
  std::vector<uint16_t> notified;
  std::vector<QueueConfig> queues;
  uint64_t features = 0;
  std::function<void()> used;
};

class FakeDevice final : public VirtioDevice {
 public:
  explicit FakeDevice(Record* r) : r_(r) {}
  uint32_t device_id() const override { return kDeviceIdBlock; }
  std::string_view name() const override { return "fake"; }
  uint64_t features() const override { return kFeatureVersion1 | (1ULL << 5); }
  uint16_t num_queues() const override { return 2; }
  uint16_t max_queue_size() const override { return 64; }
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(0x40 + offset + i);
  }
  void WriteConfig(uint64_t, std::span<const uint8_t>) override {}
  absl::Status Activate(uint64_t f, const std::vector<QueueConfig>& q, std::function<void()> used) override {
    ++r_->activations;
    r_->features = f;
    r_->queues = q;
    r_->used = std::move(used);
    return absl::OkStatus();
  }
  void Notify(uint16_t q) override { r_->notified.push_back(q); }
  void Reset() override { ++r_->resets; }

 private:
  Record* r_;
};

}  // namespace

TEST_CASE("identification registers and the feature window") {
  Record rec;
  RecordingIrqSink irq;
  VirtioMmio dev(std::make_unique<FakeDevice>(&rec), &irq, 16);
  testing::VirtioTestDriver drv(&dev, nullptr);
  CHECK(drv.Reg(0x000) == 0x74726976);
  CHECK(drv.Reg(0x004) == 2);
  CHECK(drv.Reg(0x008) == kDeviceIdBlock);
  CHECK(drv.DeviceFeatures() == (kFeatureVersion1 | (1ULL << 5)));
  uint8_t cfg[2];
  dev.Read(0x104, cfg);
  CHECK((cfg[0] == 0x44 && cfg[1] == 0x45));
  drv.SetReg(0x30, 7);
  CHECK(drv.Reg(0x34) == 0);  // no queue 7
  drv.SetReg(0x30, 1);
  CHECK(drv.Reg(0x34) == 64);
}

TEST_CASE("FEATURES_OK is refused for features not offered or without VERSION_1") {
  Record rec;
  RecordingIrqSink irq;
  VirtioMmio dev(std::make_unique<FakeDevice>(&rec), &irq, 16);
  testing::VirtioTestDriver drv(&dev, nullptr);
  CHECK((drv.Negotiate(1ULL << 5) & kStatusFeaturesOk) == 0);
  CHECK((drv.Negotiate(kFeatureVersion1 | (1ULL << 7)) & kStatusFeaturesOk) == 0);
  CHECK((drv.Negotiate(kFeatureVersion1 | (1ULL << 5)) & kStatusFeaturesOk) != 0);
}

TEST_CASE("DRIVER_OK activates the ready queues; notifies reach them; the interrupt is a level until acked") {
  Record rec;
  RecordingIrqSink irq;
  VirtioMmio dev(std::make_unique<FakeDevice>(&rec), &irq, 17);
  testing::VirtioTestDriver drv(&dev, nullptr);
  REQUIRE((drv.Negotiate(kFeatureVersion1) & kStatusFeaturesOk) != 0);
  drv.SetReg(0x30, 1);
  drv.SetReg(0x38, 48);  // not a power of two: refused
  drv.SetReg(0x38, 32);
  drv.SetReg(0x80, 0x1000);
  drv.SetReg(0x90, 0x2000);
  drv.SetReg(0xa0, 0x3000);
  drv.SetReg(0xa4, 1);
  drv.SetReg(0x44, 1);
  CHECK(drv.Reg(0x44) == 1);
  drv.SetReg(0x50, 1);  // before DRIVER_OK: dropped
  drv.SetReg(0x70, 1 | 2 | 8 | 4);
  REQUIRE(rec.activations == 1);
  REQUIRE(rec.queues.size() == 1);
  CHECK((rec.queues[0].index == 1 && rec.queues[0].size == 32 && rec.queues[0].desc == 0x1000 &&
         rec.queues[0].driver == 0x2000 && rec.queues[0].device == 0x1'0000'3000ULL));
  CHECK(rec.features == kFeatureVersion1);
  drv.SetReg(0x80, 0x9000);  // queue registers are frozen while running
  drv.SetReg(0x50, 0);       // queue 0 not ready: dropped
  drv.SetReg(0x50, 1);
  CHECK(rec.notified == std::vector<uint16_t>{1});

  rec.used();
  CHECK(irq.level(17));
  CHECK(drv.Reg(0x60) == 1);
  rec.used();
  CHECK(irq.rising_edges(17) == 1);
  drv.SetReg(0x64, 1);
  CHECK(!irq.level(17));
  CHECK(drv.Reg(0x60) == 0);

  rec.used();
  drv.SetReg(0x70, 0);  // reset: the device stops, the line drops, the registers clear
  CHECK(rec.resets == 1);
  CHECK(!irq.level(17));
  CHECK(drv.Reg(0x70) == 0);
  drv.SetReg(0x30, 1);
  CHECK(drv.Reg(0x44) == 0);
}

// The mirror the machine maps read-only over the window must read, word for word, as Read() does: the guest's
// reads come from it without an exit.
TEST_CASE("the register mirror reads as the registers do, after every step a driver takes") {
  Record rec;
  RecordingIrqSink irq;
  VirtioMmio dev(std::make_unique<FakeDevice>(&rec), &irq, 18);
  testing::VirtioTestDriver drv(&dev, nullptr);
  auto same = [&](const char* step) {
    INFO(step);
    for (uint64_t off = 0; off < VirtioMmio::kSize; off += 4) {
      INFO("offset " << std::hex << off);
      CHECK(dev.mirror().Load32(off) == drv.Reg(off));
    }
    for (uint64_t off = VirtioMmio::kSize; off < RegisterMirror::kSize; off += 4) CHECK(dev.mirror().Load32(off) == 0);
  };
  same("reset state");
  drv.SetReg(0x14, 1);  // the high feature word shows in DeviceFeatures
  same("feature window 1");
  REQUIRE((drv.Negotiate(kFeatureVersion1) & kStatusFeaturesOk) != 0);
  same("negotiated");
  drv.SetReg(0x30, 1);
  drv.SetReg(0x38, 32);
  drv.SetReg(0x44, 1);
  same("queue 1 ready");
  drv.SetReg(0x30, 0);
  same("queue 0 selected");
  drv.SetReg(0x70, 1 | 2 | 8 | 4);
  REQUIRE(rec.activations == 1);
  rec.used();  // from the device's side, as the completion thread does
  same("interrupt raised");
  CHECK(dev.mirror().Load32(0x60) == 1);
  drv.SetReg(0x64, 1);
  same("interrupt acknowledged");
  rec.used();
  drv.SetReg(0x70, 0);
  same("reset");
  CHECK(dev.mirror().Load32(0x60) == 0);
}

TEST_CASE("RegisterMirror: bytes land little-endian in whole words; misaligned or outside stores are ignored") {
  RegisterMirror m;
  const uint8_t bytes[] = {1, 2, 3, 4, 5, 6};
  m.StoreBytes(0x100, bytes);
  CHECK(m.Load32(0x100) == 0x04030201u);
  CHECK(m.Load32(0x104) == 0x0605u);
  m.Store32(0x102, 7);
  m.Store32(RegisterMirror::kSize, 7);
  CHECK(m.Load32(0x100) == 0x04030201u);
  CHECK(reinterpret_cast<uintptr_t>(m.page()) % RegisterMirror::kSize == 0);
}

// An acknowledgement the guest posted (KVM's coalesced MMIO ring) is replayed before the next completion sets
// its bit: it clears the old completion only, and the new one makes a new edge.
TEST_CASE("a posted InterruptACK is replayed before the next interrupt, never after it") {
  Record rec;
  RecordingIrqSink irq;
  VirtioMmio dev(std::make_unique<FakeDevice>(&rec), &irq, 19);
  testing::VirtioTestDriver drv(&dev, nullptr);
  std::vector<uint32_t> posted;
  int flushes = 0;
  dev.SetPostedWriteFlush([&] {
    ++flushes;
    for (uint32_t v : posted) drv.SetReg(0x64, v);  // what ReplayPostedWrites does through the bus
    posted.clear();
  });
  REQUIRE((drv.Negotiate(kFeatureVersion1) & kStatusFeaturesOk) != 0);
  drv.SetReg(0x30, 0);
  drv.SetReg(0x38, 16);
  drv.SetReg(0x44, 1);
  drv.SetReg(0x70, 1 | 2 | 8 | 4);
  REQUIRE(rec.activations == 1);
  rec.used();
  CHECK(flushes == 1);
  CHECK(irq.rising_edges(19) == 1);
  CHECK(dev.mirror().Load32(0x60) == 1);  // the handler reads the status from the mirror
  posted.push_back(1);                    // ... and acknowledges it without an exit
  rec.used();                             // a completion after the acknowledgement
  CHECK(posted.empty());
  CHECK(dev.mirror().Load32(0x60) == 1);  // not cleared by the late replay
  CHECK(irq.level(19));
  CHECK(irq.rising_edges(19) == 2);       // the line fell at the replay and rose again: the guest hears of it
}
