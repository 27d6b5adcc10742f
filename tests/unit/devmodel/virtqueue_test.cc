// The device side of a split virtqueue against rings laid out by the test driver (written from the spec), and
// --net parsing.
#include <catch2/catch.hpp>

#include "devmodel/virtio/virtio_mmio.h"
#include "devmodel/virtio/virtio_net_tap.h"
#include "devmodel/virtio/virtqueue.h"
#include "recording_irq_sink.h"
#include "virtio_test_driver.h"

using namespace coalesce;
using namespace coalesce::virtio;
using testing::VirtioTestDriver;

namespace {

// A device that only records its queue configuration, so the test driver can lay rings out through a transport.
class QueueOnlyDevice final : public VirtioDevice {
 public:
  uint32_t device_id() const override { return 1; }
  std::string_view name() const override { return "q"; }
  uint64_t features() const override { return kFeatureVersion1; }
  uint16_t num_queues() const override { return 1; }
  uint16_t max_queue_size() const override { return 16; }
  void ReadConfig(uint64_t, std::span<uint8_t>) override {}
  void WriteConfig(uint64_t, std::span<const uint8_t>) override {}
  absl::Status Activate(uint64_t, const std::vector<QueueConfig>& q, std::function<void()>) override {
    queue = q.at(0);
    return absl::OkStatus();
  }
  void Notify(uint16_t) override {}
  void Reset() override {}
  QueueConfig queue;
};

}  // namespace

TEST_CASE("chains are popped in order, gathered, scattered and returned used") {
  auto mem = GuestMemory::Create(16 << 20);
  REQUIRE(mem.ok());
  RecordingIrqSink irq;
  auto owned = std::make_unique<QueueOnlyDevice>();
  QueueOnlyDevice* dev = owned.get();
  VirtioMmio mmio(std::move(owned), &irq, 16);
  VirtioTestDriver drv(&mmio, mem->host_base());
  REQUIRE((drv.Negotiate(kFeatureVersion1) & kStatusFeaturesOk) != 0);
  drv.StartQueue0();
  Virtqueue vq(&*mem, dev->queue);

  auto none = vq.Pop();
  REQUIRE(none.ok());
  CHECK(!none->has_value());

  const std::string out = "hello, device";
  drv.Write(0x30000, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
  drv.Submit({{0x30000, 5, false}, {0x30005, static_cast<uint32_t>(out.size() - 5), false}, {0x31000, 8, true},
              {0x32000, 8, true}});
  auto chain = vq.Pop();
  REQUIRE(chain.ok());
  REQUIRE(chain->has_value());
  CHECK((*chain)->readable_bytes() == out.size());
  CHECK((*chain)->writable_bytes() == 16);
  auto gathered = vq.ReadAll(**chain, 100);
  REQUIRE(gathered.ok());
  CHECK(std::string(gathered->begin(), gathered->end()) == out);
  const std::string in = "0123456789ab";  // spans both writable buffers
  auto written = vq.WriteAll(**chain, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(in.data()), in.size()));
  REQUIRE(written.ok());
  CHECK(*written == in.size());
  char back[12];
  drv.Read(0x31000, std::span<uint8_t>(reinterpret_cast<uint8_t*>(back), 8));
  drv.Read(0x32000, std::span<uint8_t>(reinterpret_cast<uint8_t*>(back) + 8, 4));
  CHECK(std::string(back, 12) == in);
  REQUIRE(vq.Push((*chain)->head, *written).ok());
  CHECK(drv.UsedIdx() == 0);  // not published yet
  REQUIRE(vq.Publish().ok());
  CHECK(drv.UsedIdx() == 1);

  // A chain leaving guest RAM is returned at once and skipped.
  drv.Submit({{0x7000'0000'0000ULL, 64, false}});
  auto refused = vq.Pop();
  REQUIRE(refused.ok());
  CHECK(!refused->has_value());
  CHECK(vq.refused_chains() == 1);
  REQUIRE(vq.Publish().ok());
  CHECK(drv.UsedIdx() == 2);

  // An available index more than a ring ahead of the device is a broken driver: an error, nothing walked.
  const uint16_t ahead = static_cast<uint16_t>(drv.avail_idx() + 17);  // the ring has 16 entries
  uint8_t idx[2] = {static_cast<uint8_t>(ahead), static_cast<uint8_t>(ahead >> 8)};
  drv.Write(VirtioTestDriver::kAvail + 2, idx);
  auto broken = vq.Pop();
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.status().message().find("made 17 chains available in a ring of 16") != std::string::npos);
  CHECK(vq.refused_chains() == 1);
}

TEST_CASE("--net takes a TAP name and an optional unicast MAC") {
  auto n = ParseNetSpec("tap=tap0");
  REQUIRE(n.ok());
  CHECK((n->tap == "tap0" && !n->mac));
  n = ParseNetSpec("tap=t1,mac=52:54:00:ab:CD:ef");
  REQUIRE(n.ok());
  CHECK((*n->mac == std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}));
  CHECK(ParseNetSpec("mac=52:54:00:00:00:01").status().message().find("needs tap=") != std::string::npos);
  CHECK(ParseNetSpec("tap=").status().message().find("tap name") != std::string::npos);
  CHECK(ParseNetSpec("tap=averyveryverylongname").status().message().find("tap name") != std::string::npos);
  CHECK(ParseNetSpec("tap=a,mac=01:00:5e:00:00:01").status().message().find("multicast") != std::string::npos);
  CHECK(ParseNetSpec("tap=a,mac=52:54:00").status().message().find("six hex bytes") != std::string::npos);
  CHECK(ParseNetSpec("tap=a,vhost=on").status().message().find("unknown option 'vhost=on'") != std::string::npos);
}
