// A virtio network device whose back end is a TAP interface of this host, emulated here. Why not QEMU's: Debian 12
// packages no vhost-user-net back end (passt gained vhost-user only in 2024; DPDK's is a framework, not a
// service), and the kernel's vhost-net would reach guest RAM from a kernel thread on the home only. This device
// reads and writes guest RAM through GuestMemory, so in a coalesced guest every access is a DSM access (coherent
// without pins). docs/NETWORK.md.
//
// Frames carry the 12-byte virtio_net_hdr (VERSION_1) and no offloads: no checksum or segmentation features are
// offered, so the header is all zeros (num_buffers 1 on receive). Queue 0 receives, queue 1 transmits.
//
// Threads: one worker (the kick eventfds, the TAP fd, a stop eventfd). Lock order as VhostUserBlk:
// VirtioMmio::mu_ -> mu_ -> VirtioMmio::irq_mu_.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devmodel/virtio/virtio_device.h"
#include "devmodel/virtio/virtqueue.h"
#include "hypervisor/base/unique_fd.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

// `tap=NAME[,mac=52:54:00:xx:xx:xx]` (coalesce run --net).
struct NetSpec {
  std::string tap;
  std::optional<std::array<uint8_t, 6>> mac;
};
absl::StatusOr<NetSpec> ParseNetSpec(std::string_view arg);

class VirtioNetTap final : public virtio::VirtioDevice {
 public:
  static constexpr uint64_t kFeatureMac = 1ULL << 5;
  static constexpr uint16_t kQueueSize = 256;
  static constexpr size_t kHeaderSize = 12;        // struct virtio_net_hdr with num_buffers
  static constexpr size_t kMaxFrame = 65536;       // what one TAP read or write may carry

  // Attaches to the existing TAP interface `spec.tap` (IFF_TAP | IFF_NO_PI); `default_mac` when none is given.
  // FailedPrecondition naming the interface when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<VirtioNetTap>> Create(const NetSpec& spec, std::array<uint8_t, 6> default_mac,
                                                              const GuestMemory* memory, std::string name);
  ~VirtioNetTap() override;

  [[nodiscard]] uint32_t device_id() const override { return 1; }
  [[nodiscard]] std::string_view name() const override { return name_; }
  [[nodiscard]] uint64_t features() const override { return virtio::kFeatureVersion1 | kFeatureMac; }
  [[nodiscard]] uint16_t num_queues() const override { return 2; }
  [[nodiscard]] uint16_t max_queue_size() const override { return kQueueSize; }
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override;
  void WriteConfig(uint64_t offset, std::span<const uint8_t> data) override;
  absl::Status Activate(uint64_t driver_features, const std::vector<virtio::QueueConfig>& queues,
                        std::function<void()> used_buffer) override;
  void Notify(uint16_t queue) override;
  [[nodiscard]] int notify_eventfd(uint16_t queue) const override;
  void Reset() override;

  struct Counters {
    uint64_t rx_frames, tx_frames, rx_dropped;
  };
  [[nodiscard]] Counters counters() const;

 private:
  VirtioNetTap(UniqueFd tap, std::array<uint8_t, 6> mac, const GuestMemory* memory, std::string name)
      : tap_(std::move(tap)), mac_(mac), memory_(memory), name_(std::move(name)) {}
  void WorkerLoop();
  void Transmit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Receive() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Complete(virtio::Virtqueue& q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  UniqueFd tap_;
  const std::array<uint8_t, 6> mac_;
  const GuestMemory* memory_;
  const std::string name_;
  UniqueFd kick_fds_[2];
  UniqueFd stop_fd_;
  std::thread worker_;

  mutable absl::Mutex mu_;
  std::optional<virtio::Virtqueue> rx_ ABSL_GUARDED_BY(mu_);
  std::optional<virtio::Virtqueue> tx_ ABSL_GUARDED_BY(mu_);
  std::function<void()> used_buffer_ ABSL_GUARDED_BY(mu_);
  std::vector<uint8_t> pending_ ABSL_GUARDED_BY(mu_);  // a received frame waiting for a receive buffer
  bool rx_starved_ ABSL_GUARDED_BY(mu_) = false;       // the guest gave no receive buffer: stop reading the TAP
  Counters counters_ ABSL_GUARDED_BY(mu_) = {};
};

}  // namespace coalesce
