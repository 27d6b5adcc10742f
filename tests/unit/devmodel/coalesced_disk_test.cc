// A disk of a coalesced guest, without KVM: the guest's driver runs on an "edge" DSM node (its rings and buffers
// live in the edge's copy of guest RAM), the front end and qemu-storage-daemon at the home node, both nodes real
// (userfaultfd + TCP loopback) in this process. The daemon touches guest RAM behind the DSM's back, so the
// front end must pull each request's pages home and hold them there (shadow rings + DsmDmaGuard) for the image
// file (read on the host) and the edge's view of the data to agree.
#include <catch2/catch.hpp>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "devmodel/vhost_user/storage_daemon.h"
#include "devmodel/vhost_user/vhost_user_blk.h"
#include "devmodel/virtio/virtio_mmio.h"
#include "dsm/dsm_node.h"
#include "hypervisor/base/temp_dir.h"
#include "hypervisor/machine/dsm_dma_guard.h"
#include "recording_irq_sink.h"
#include "virtio_test_driver.h"

using namespace coalesce;
using testing::VirtioTestDriver;

namespace {

constexpr uint64_t kRam = 16 << 20;
constexpr uint64_t kHeader = VirtioTestDriver::kBuffers;
constexpr uint64_t kData = VirtioTestDriver::kBuffers + 0x1000;
constexpr uint64_t kStatus = VirtioTestDriver::kBuffers + 0x3000;

dsm::DsmNodeConfig Config(dsm::NodeId self) {
  dsm::DsmNodeConfig c;
  c.self = self;
  c.listen_address = "127.0.0.1";
  c.request_timeout = absl::Seconds(5);
  c.peer_timeout = absl::Seconds(3);
  c.on_error = [](const absl::Status& s) { FAIL_CHECK("DSM error: " << s.ToString()); };
  return c;
}

std::string ReadFileAt(const std::string& path, size_t offset, size_t len) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::string out(len, '\0');
  in.read(out.data(), static_cast<std::streamsize>(len));
  return out;
}

uint8_t Request(VirtioTestDriver& drv, uint32_t type, uint64_t sector, std::vector<uint8_t>* data) {
  uint8_t hdr[16] = {};
  for (int i = 0; i < 4; ++i) hdr[i] = static_cast<uint8_t>(type >> (8 * i));
  for (int i = 0; i < 8; ++i) hdr[8 + i] = static_cast<uint8_t>(sector >> (8 * i));
  drv.Write(kHeader, hdr);
  uint8_t st = 0xff;
  drv.Write(kStatus, std::span<const uint8_t>(&st, 1));
  std::vector<VirtioTestDriver::Buf> chain = {{kHeader, 16, false}};
  if (data != nullptr) {
    if (type == 1) drv.Write(kData, *data);
    chain.push_back({kData, static_cast<uint32_t>(data->size()), type == 0});
  }
  chain.push_back({kStatus, 1, true});
  drv.Submit(chain);
  if (!drv.WaitUsed()) return 0xfe;
  if (type == 0 && data != nullptr) drv.Read(kData, *data);
  drv.Read(kStatus, std::span<uint8_t>(&st, 1));
  return st;
}

}  // namespace

TEST_CASE("a driver on an edge node reads and writes a disk served at home, coherently") {
  auto dir = TempDir::Create("coalesced-disk-test-");
  REQUIRE(dir.ok());
  const std::string image = dir->path() + "/disk.raw";
  {
    std::string content(1 << 20, '\0');
    for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>((i / 512) * 7 + i % 13);
    std::ofstream(image, std::ios::binary) << content;
  }
  auto mem = GuestMemory::Create(kRam);
  REQUIRE(mem.ok());
  auto home = dsm::DsmNode::Create(Config(0), mem->memfd(), mem->host_base(), kRam);
  REQUIRE(home.ok());
  auto edge = dsm::DsmNode::CreateWithOwnMemory(Config(1), kRam);
  REQUIRE(edge.ok());
  REQUIRE((*edge)->Connect({0, "127.0.0.1", (*home)->port()}).ok());
  REQUIRE((*home)->WaitForPeers({1}, absl::Seconds(5)).ok());
  REQUIRE((*edge)->WaitForPeers({0}, absl::Seconds(5)).ok());

  DsmDmaGuard guard(&*mem, [&]() -> dsm::DsmNode* { return home->get(); });
  auto daemon = StorageDaemon::Start({.path = image, .format = DiskFormat::kRaw}, dir->path(), 0);
  REQUIRE(daemon.ok());
  auto blk = VhostUserBlk::Create(std::move(*daemon), &*mem, {.name = "vda", .shadow_guard = &guard});
  REQUIRE(blk.ok());
  RecordingIrqSink irq;
  virtio::VirtioMmio dev(std::move(*blk), &irq, 16);
  // The driver's memory accesses are the edge's; its register accesses reach the home's device (as a forwarded
  // MMIO exit would).
  VirtioTestDriver drv(&dev, (*edge)->data());
  REQUIRE((drv.Negotiate(virtio::kFeatureVersion1) & virtio::kStatusFeaturesOk) != 0);
  drv.StartQueue0();
  const uint64_t data_page = kData / 4096;

  // A write: the data page is Modified on the edge when the request is made.
  std::vector<uint8_t> pattern(4096);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i * 31 + 5);
  drv.Write(kData, pattern);
  CHECK((*edge)->page_state(data_page) == dsm::PageState::kModified);
  REQUIRE(Request(drv, 1, 64, &pattern) == 0);
  CHECK(ReadFileAt(image, 64 * 512, 4096) == std::string(pattern.begin(), pattern.end()));

  // A read into a page the edge holds: the daemon's data must replace the edge's stale bytes.
  std::vector<uint8_t> stale(4096, 0xee);
  drv.Write(kData, stale);
  std::vector<uint8_t> got(4096);
  REQUIRE(Request(drv, 0, 8, &got) == 0);
  CHECK(std::string(got.begin(), got.end()) == ReadFileAt(image, 8 * 512, 4096));

  // Nothing stays pinned: the edge takes the request pages back at once (a pinned page would stall this write
  // until the DSM's deadline and fail the test through on_error).
  uint8_t one = 1;
  drv.Write(kHeader, std::span<const uint8_t>(&one, 1));
  drv.Write(kStatus, std::span<const uint8_t>(&one, 1));
  CHECK((*edge)->page_state(kHeader / 4096) == dsm::PageState::kModified);
  CHECK((*edge)->page_state(kStatus / 4096) == dsm::PageState::kModified);
  CHECK((*home)->health().ok());
  CHECK((*edge)->health().ok());
}
