// The vhost-user front end against the real qemu-storage-daemon, without KVM: a test driver (not Linux) puts
// virtio-blk requests in guest RAM, the daemon serves them from the image file, and the file itself, read on the
// host, is the independent reference.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "devmodel/vhost_user/storage_daemon.h"
#include "devmodel/vhost_user/vhost_user_blk.h"
#include "devmodel/virtio/virtio_mmio.h"
#include "hypervisor/base/child_process.h"
#include "hypervisor/base/temp_dir.h"
#include "recording_irq_sink.h"
#include "virtio_test_driver.h"

using namespace coalesce;
using testing::VirtioTestDriver;

namespace {

constexpr uint32_t kGsi = 16;
constexpr uint64_t kHeader = VirtioTestDriver::kBuffers;
constexpr uint64_t kData = VirtioTestDriver::kBuffers + 0x1000;
constexpr uint64_t kStatus = VirtioTestDriver::kBuffers + 0x3000;
constexpr uint32_t kTypeIn = 0, kTypeOut = 1, kTypeFlush = 4;

std::string MakeRawImage(const TempDir& dir, const std::string& name, size_t bytes) {
  std::string path = dir.path() + "/" + name;
  std::string content(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i) content[i] = static_cast<char>((i / 512) ^ (i % 251));
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

std::string ReadFileAt(const std::string& path, size_t offset, size_t len) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::string out(len, '\0');
  in.read(out.data(), static_cast<std::streamsize>(len));
  return out;
}

// Counts what the shadow rings acquire and release, and which ranges are held now.
class RecordingGuard final : public virtio::DmaGuard {
 public:
  absl::Status Acquire(uint64_t gpa, uint64_t len) override {
    absl::MutexLock l(&mu_);
    ++acquired_;
    held_ += len;
    (void)gpa;
    return absl::OkStatus();
  }
  void Release(uint64_t, uint64_t len) override {
    absl::MutexLock l(&mu_);
    ++released_;
    held_ -= len;
  }
  uint64_t acquired() { absl::MutexLock l(&mu_); return acquired_; }
  uint64_t released() { absl::MutexLock l(&mu_); return released_; }
  uint64_t held() { absl::MutexLock l(&mu_); return held_; }

 private:
  absl::Mutex mu_;
  uint64_t acquired_ = 0, released_ = 0, held_ = 0;
};

struct Rig {
  Rig() {
    auto d = TempDir::Create("vhost-user-blk-test-");
    REQUIRE(d.ok());
    dir = std::move(*d);
  }
  TempDir dir;
  std::unique_ptr<GuestMemory> mem;
  RecordingIrqSink irq;
  std::unique_ptr<virtio::VirtioMmio> dev;
  VhostUserBlk* blk = nullptr;
  std::unique_ptr<VirtioTestDriver> drv;

  absl::Status Start(const DiskSpec& disk, virtio::DmaGuard* guard = nullptr) {
    auto m = GuestMemory::Create(16 << 20);
    if (!m.ok()) return m.status();
    mem = std::make_unique<GuestMemory>(std::move(*m));
    auto daemon = StorageDaemon::Start(disk, dir.path(), 0);
    if (!daemon.ok()) return daemon.status();
    auto b = VhostUserBlk::Create(std::move(*daemon), mem.get(), {.name = "vda", .shadow_guard = guard});
    if (!b.ok()) return b.status();
    blk = b->get();
    dev = std::make_unique<virtio::VirtioMmio>(std::move(*b), &irq, kGsi);
    drv = std::make_unique<VirtioTestDriver>(dev.get(), mem->host_base());
    return absl::OkStatus();
  }
  // One request: header, optional data, status. Returns the status byte (0 OK, 1 IOERR, 2 UNSUPP).
  uint8_t Request(uint32_t type, uint64_t sector, std::vector<uint8_t>* data) {
    uint8_t hdr[16] = {};
    for (int i = 0; i < 4; ++i) hdr[i] = static_cast<uint8_t>(type >> (8 * i));
    for (int i = 0; i < 8; ++i) hdr[8 + i] = static_cast<uint8_t>(sector >> (8 * i));
    (void)mem->Write(kHeader, hdr);
    uint8_t st = 0xff;
    (void)mem->Write(kStatus, std::span<const uint8_t>(&st, 1));
    std::vector<VirtioTestDriver::Buf> chain = {{kHeader, 16, false}};
    if (data != nullptr) {
      if (type == kTypeOut) (void)mem->Write(kData, *data);
      chain.push_back({kData, static_cast<uint32_t>(data->size()), type == kTypeIn});
    }
    chain.push_back({kStatus, 1, true});
    drv->Submit(chain);
    if (!drv->WaitUsed()) return 0xfe;
    if (type == kTypeIn && data != nullptr) (void)mem->Read(kData, *data);
    (void)mem->Read(kStatus, std::span<uint8_t>(&st, 1));
    return st;
  }
};


}  // namespace

TEST_CASE("reads and writes through qemu-storage-daemon reach the raw image file") {
  Rig r;
  const std::string image = MakeRawImage(r.dir, "disk.raw", 1 << 20);
  REQUIRE(r.Start({.path = image, .format = DiskFormat::kRaw}).ok());
  CHECK(r.blk->capacity_sectors() == (1 << 20) / 512);
  CHECK((r.blk->features() & kBlkFeatureRo) == 0);
  // The daemon's size_max of 0 ("no limit") is not passed on as a limit; its seg_max is.
  CHECK((r.blk->features() & kBlkFeatureSizeMax) == 0);
  REQUIRE((r.blk->features() & kBlkFeatureSegMax) != 0);
  std::array<uint8_t, 4> seg_max{};
  r.blk->ReadConfig(12, seg_max);
  CHECK((seg_max[0] | seg_max[1] << 8) == 126);
  REQUIRE((r.drv->Negotiate(virtio::kFeatureVersion1 | kBlkFeatureFlush) & virtio::kStatusFeaturesOk) != 0);
  r.drv->StartQueue0();

  std::vector<uint8_t> buf(4096);
  REQUIRE(r.Request(kTypeIn, 8, &buf) == 0);  // sectors 8..15 = file bytes 4096..8191
  CHECK(std::string(buf.begin(), buf.end()) == ReadFileAt(image, 4096, 4096));
  // The daemon publishes the used entry before it signals the call eventfd: the interrupt follows shortly.
  CHECK(RecordingIrqSink::WaitFor([&] { return r.irq.rising_edges(kGsi) >= 1; }, std::chrono::seconds(5)));

  std::vector<uint8_t> pattern(1024);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(0xa5 ^ i);
  REQUIRE(r.Request(kTypeOut, 100, &pattern) == 0);
  REQUIRE(r.Request(kTypeFlush, 0, nullptr) == 0);
  CHECK(ReadFileAt(image, 100 * 512, 1024) == std::string(pattern.begin(), pattern.end()));
  CHECK(r.dev->notifies() == 3);

  // Reset (as Linux does at probe and removal) stops the rings; a new negotiation starts them again.
  r.drv->SetReg(0x70, 0);
  REQUIRE((r.drv->Negotiate(virtio::kFeatureVersion1) & virtio::kStatusFeaturesOk) != 0);
  r.drv->StartQueue0();
  std::vector<uint8_t> again(1024);
  // The driver's ring starts over at index 0 after a reset.
  r.drv = std::make_unique<VirtioTestDriver>(r.dev.get(), r.mem->host_base());
  r.drv->StartQueue0();
  REQUIRE(r.Request(kTypeIn, 100, &again) == 0);
  CHECK(again == pattern);
}

TEST_CASE("direct rings: a completion a halt-polling thread raises first is not raised again by the back end's call") {
  Rig r;
  const std::string image = MakeRawImage(r.dir, "disk.raw", 1 << 20);
  REQUIRE(r.Start({.path = image, .format = DiskFormat::kRaw}).ok());
  REQUIRE((r.drv->Negotiate(virtio::kFeatureVersion1) & virtio::kStatusFeaturesOk) != 0);
  r.drv->StartQueue0();
  CHECK_FALSE(r.dev->PollUsed());  // nothing in flight, nothing to raise
  constexpr int kRequests = 50;
  int polled = 0;
  for (int i = 0; i < kRequests; ++i) {
    std::vector<uint8_t> buf(4096);
    uint8_t hdr[16] = {};
    hdr[8] = static_cast<uint8_t>(i);  // sector i
    (void)r.mem->Write(kHeader, hdr);
    r.drv->Submit({{kHeader, 16, false}, {kData, 4096, true}, {kStatus, 1, true}});
    // Poll as a halted vCPU would, racing the worker that reads the daemon's call.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (r.drv->UsedIdx() != r.drv->avail_idx() && std::chrono::steady_clock::now() < deadline) {
      if (r.dev->PollUsed()) ++polled;
    }
    REQUIRE(r.drv->UsedIdx() == r.drv->avail_idx());
    // Whoever raised it, the completion gives exactly one interrupt: wait for it, then for a duplicate.
    REQUIRE(RecordingIrqSink::WaitFor([&] { return r.dev->interrupts() >= static_cast<uint64_t>(i + 1); },
                                      std::chrono::seconds(5)));
    r.drv->SetReg(0x64, 1);  // InterruptACK, as the driver's handler does
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(r.dev->interrupts() == kRequests);
  CHECK(r.irq.rising_edges(kGsi) == kRequests);
  CHECK(ReadFileAt(image, (kRequests - 1) * 512, 4096) == std::string(reinterpret_cast<const char*>(
                                                                 r.mem->host_base() + kData), 4096));
  INFO("completions the poller raised first: " << polled << " of " << kRequests);
  CHECK(polled > 0);  // the poller, spinning, beats the worker's wake-up to some of them
}

TEST_CASE("a read-only disk offers VIRTIO_BLK_F_RO and its image is not changed by a write") {
  Rig r;
  const std::string image = MakeRawImage(r.dir, "ro.raw", 64 << 10);
  const std::string before = ReadFileAt(image, 0, 64 << 10);
  REQUIRE(r.Start({.path = image, .format = DiskFormat::kRaw, .readonly = true}).ok());
  CHECK((r.blk->features() & kBlkFeatureRo) != 0);
  REQUIRE((r.drv->Negotiate(virtio::kFeatureVersion1 | kBlkFeatureRo) & virtio::kStatusFeaturesOk) != 0);
  r.drv->StartQueue0();
  std::vector<uint8_t> data(512, 0x77);
  CHECK(r.Request(kTypeOut, 0, &data) != 0);
  CHECK(ReadFileAt(image, 0, 64 << 10) == before);
}

TEST_CASE("an image another process writes is refused, naming the file") {
  Rig r;
  const std::string image = MakeRawImage(r.dir, "locked.raw", 64 << 10);
  Rig first;
  REQUIRE(first.Start({.path = image, .format = DiskFormat::kRaw}).ok());
  absl::Status st = r.Start({.path = image, .format = DiskFormat::kRaw});
  CHECK(st.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(st.message().find(image) != std::string::npos);
  CHECK(st.message().find("locked") != std::string::npos);
  // QEMU refuses the image too while our daemon exports it.
  ChildProcess::Options o;
  o.argv = {"/usr/bin/qemu-io", "-f", "raw", "-c", "write 0 512", image};
  o.output_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  auto qemu_io = ChildProcess::Spawn(o);
  REQUIRE(qemu_io.ok());
  auto status = qemu_io->Wait();
  ::close(o.output_fd);
  REQUIRE(status.ok());
  CHECK(WaitStatusToExitCode(*status) != 0);
}

TEST_CASE("a wrong format is refused naming the file") {
  Rig r;
  const std::string image = MakeRawImage(r.dir, "plain.raw", 64 << 10);
  absl::Status st = r.Start({.path = image, .format = DiskFormat::kQcow2});
  CHECK(st.code() == absl::StatusCode::kInvalidArgument);
  CHECK(st.message().find("plain.raw") != std::string::npos);
}

TEST_CASE("shadow rings: requests reach the image, every buffer is held while the daemon has it") {
  Rig r;
  RecordingGuard guard;
  const std::string image = MakeRawImage(r.dir, "shadow.raw", 1 << 20);
  REQUIRE(r.Start({.path = image, .format = DiskFormat::kRaw}, &guard).ok());
  CHECK(r.blk->shadow_rings());
  CHECK((r.blk->features() & (virtio::kFeatureEventIdx | virtio::kFeatureIndirectDesc)) == 0);
  REQUIRE((r.drv->Negotiate(virtio::kFeatureVersion1 | kBlkFeatureFlush) & virtio::kStatusFeaturesOk) != 0);
  r.drv->StartQueue0();
  std::vector<uint8_t> buf(4096);
  REQUIRE(r.Request(kTypeIn, 8, &buf) == 0);
  CHECK(std::string(buf.begin(), buf.end()) == ReadFileAt(image, 4096, 4096));
  std::vector<uint8_t> pattern(2048, 0x3c);
  REQUIRE(r.Request(kTypeOut, 7, &pattern) == 0);
  REQUIRE(r.Request(kTypeFlush, 0, nullptr) == 0);
  CHECK(ReadFileAt(image, 7 * 512, 2048) == std::string(pattern.begin(), pattern.end()));
  CHECK(guard.acquired() == 3 + 3 + 2);  // header, data, status per request; no data for the flush
  CHECK(guard.released() == guard.acquired());
  CHECK(guard.held() == 0);
}

TEST_CASE("shadow rings: a chain outside guest RAM is refused without reaching the daemon") {
  Rig r;
  RecordingGuard guard;
  const std::string image = MakeRawImage(r.dir, "hostile.raw", 64 << 10);
  REQUIRE(r.Start({.path = image, .format = DiskFormat::kRaw}, &guard).ok());
  REQUIRE((r.drv->Negotiate(virtio::kFeatureVersion1) & virtio::kStatusFeaturesOk) != 0);
  r.drv->StartQueue0();
  r.drv->Submit({{kHeader, 16, false}, {0x7000'0000'0000ULL, 512, true}, {kStatus, 1, true}});
  REQUIRE(r.drv->WaitUsed());
  CHECK(guard.acquired() == 0);
  std::vector<uint8_t> buf(512);
  CHECK(r.Request(kTypeIn, 0, &buf) == 0);  // the queue still works
}

TEST_CASE("shadow rings: when the daemon dies, the request in flight completes with an I/O error") {
  Rig r;
  RecordingGuard guard;
  const std::string image = MakeRawImage(r.dir, "dies.raw", 64 << 10);
  REQUIRE(r.Start({.path = image, .format = DiskFormat::kRaw}, &guard).ok());
  REQUIRE((r.drv->Negotiate(virtio::kFeatureVersion1) & virtio::kStatusFeaturesOk) != 0);
  r.drv->StartQueue0();
  ::kill(r.blk->daemon_pid(), SIGSTOP);  // the request reaches the daemon but is never served
  std::vector<uint8_t> buf(512);
  uint8_t hdr[16] = {};
  (void)r.mem->Write(kHeader, hdr);
  r.drv->Submit({{kHeader, 16, false}, {kData, 512, true}, {kStatus, 1, true}});
  CHECK(RecordingIrqSink::WaitFor([&] { return guard.held() > 0; }, std::chrono::seconds(5)));
  CHECK(r.drv->UsedIdx() == 0);
  ::kill(r.blk->daemon_pid(), SIGKILL);
  REQUIRE(r.drv->WaitUsed());
  uint8_t st = 0;
  (void)r.mem->Read(kStatus, std::span<uint8_t>(&st, 1));
  CHECK(st == 1);  // VIRTIO_BLK_S_IOERR
  CHECK(guard.held() == 0);
  CHECK(r.blk->daemon_failed());
  CHECK(RecordingIrqSink::WaitFor([&] { return r.irq.level(kGsi); }, std::chrono::seconds(5)));
  // Later requests fail at once.
  CHECK(r.Request(kTypeIn, 0, &buf) == 1);
}
