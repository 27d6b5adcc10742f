// A virtio block device whose back end is a vhost-user-blk server (qemu-storage-daemon): this is the vhost-user
// front end. Guest RAM is shared with the back end through GuestMemory's memfd (the memory table), so the back
// end reads and writes request buffers in place; queue notifies are forwarded to kick eventfds and the back
// end's call eventfds become the transport's used-buffer interrupt. docs/DEVICES.md has the message sequence.
//
// Two ways to run the queues:
// - direct (a guest on one node): the back end reads and writes the guest's own rings; a notify is one write to
//   the kick eventfd, on the vCPU thread;
// - shadow rings (a coalesced guest; ShadowVirtqueue): the back end runs rings the front end owns, and the
//   worker thread moves requests between them and the guest's, pinning each request's pages at home with the
//   DmaGuard while the back end may touch them. The guest is not offered EVENT_IDX or INDIRECT_DESC then.
// With shadow rings a dead back end's requests complete with VIRTIO_BLK_S_IOERR; direct, they stay unanswered.
//
// Threads: one worker per device (guest kicks in shadow mode, the back end's call eventfds, the daemon's pidfd,
// a stop eventfd); with direct rings a halt-polling vCPU may raise a completion first
// (PollUsed). Lock order: VirtioMmio::mu_ -> mu_ -> VirtioMmio::irq_mu_ (the worker calls used_buffer
// under mu_, so Reset, which takes mu_, knows no call is in progress when it returns).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "devmodel/vhost_user/storage_daemon.h"
#include "devmodel/vhost_user/used_index_watch.h"
#include "devmodel/vhost_user/shadow_virtqueue.h"
#include "devmodel/vhost_user/vhost_user_connection.h"
#include "devmodel/virtio/dma_guard.h"
#include "hypervisor/base/mapping.h"
#include "devmodel/virtio/virtio_device.h"
#include "hypervisor/base/unique_fd.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

// virtio-blk feature bits this front end passes on (virtio 1.2, 5.2.3); others the back end offers are hidden.
inline constexpr uint64_t kBlkFeatureSizeMax = 1ULL << 1;
inline constexpr uint64_t kBlkFeatureSegMax = 1ULL << 2;
inline constexpr uint64_t kBlkFeatureGeometry = 1ULL << 4;
inline constexpr uint64_t kBlkFeatureRo = 1ULL << 5;
inline constexpr uint64_t kBlkFeatureBlkSize = 1ULL << 6;
inline constexpr uint64_t kBlkFeatureFlush = 1ULL << 9;
inline constexpr uint64_t kBlkFeatureTopology = 1ULL << 10;
inline constexpr uint64_t kBlkFeatureMq = 1ULL << 12;
inline constexpr uint64_t kBlkFeatureDiscard = 1ULL << 13;
inline constexpr uint64_t kBlkFeatureWriteZeroes = 1ULL << 14;

class VhostUserBlk final : public virtio::VirtioDevice {
 public:
  static constexpr uint32_t kConfigSize = 60;  // struct virtio_blk_config up to write_zeroes_may_unmap + padding
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint16_t kMaxQueues = 8;

  // Connects to the daemon's socket (waiting for it to start), negotiates the protocol and reads the device
  // configuration. An image the daemon refused is reported with the daemon's own words.
  struct Options {
    std::string name = "vda";
    // Null: direct rings. Otherwise shadow rings, with this guard around every request (it must outlive us).
    virtio::DmaGuard* shadow_guard = nullptr;
  };
  static absl::StatusOr<std::unique_ptr<VhostUserBlk>> Create(std::unique_ptr<StorageDaemon> daemon,
                                                              const GuestMemory* memory, const Options& options);
  ~VhostUserBlk() override;

  [[nodiscard]] uint32_t device_id() const override { return virtio::kDeviceIdBlock; }
  [[nodiscard]] std::string_view name() const override { return name_; }
  [[nodiscard]] uint64_t features() const override { return guest_features_; }
  [[nodiscard]] uint16_t num_queues() const override { return num_queues_; }
  [[nodiscard]] uint16_t max_queue_size() const override { return kQueueSize; }
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override;
  void WriteConfig(uint64_t offset, std::span<const uint8_t> data) override;
  absl::Status Activate(uint64_t driver_features, const std::vector<virtio::QueueConfig>& queues,
                        std::function<void()> used_buffer) override;
  void Notify(uint16_t queue) override;
  [[nodiscard]] int notify_eventfd(uint16_t queue) const override;
  void Reset() override;
  // Direct rings: a used index that moved is claimed and raised here, before the worker reads the back end's
  // call (UsedIndexWatch). Shadow rings: nothing (the worker must move the entries first).
  bool PollUsed() override;

  [[nodiscard]] uint64_t capacity_sectors() const;
  [[nodiscard]] bool daemon_failed() const { return daemon_failed_.load(); }
  [[nodiscard]] bool shadow_rings() const { return guard_ != nullptr; }
  [[nodiscard]] pid_t daemon_pid() const { return daemon_->pid(); }
  // The guest physical address the shadow rings have in the back end's memory table (never guest RAM).
  static constexpr uint64_t kShadowGpa = 0xffff'0000'0000ULL;

 private:
  VhostUserBlk(std::unique_ptr<StorageDaemon> daemon, const GuestMemory* memory, const Options& options,
               vhost_user::Connection conn);
  absl::Status CreateShadowMemory();
  void OnGuestKick(uint16_t q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnBackendCall(uint16_t q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnDaemonExit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Negotiate();
  // `event_idx`: the driver negotiated VIRTIO_F_EVENT_IDX.
  absl::Status StartQueue(const virtio::QueueConfig& q, bool event_idx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> HostAddress(uint64_t gpa, uint64_t len) const;
  // A little-endian field of the back end's configuration space (virtio 1.x), `bytes` long.
  [[nodiscard]] uint64_t ConfigField(size_t offset, size_t bytes) const;
  void WorkerLoop();

  std::unique_ptr<StorageDaemon> daemon_;
  const GuestMemory* memory_;
  std::string name_;
  virtio::DmaGuard* guard_;  // null: direct rings
  UniqueFd shadow_fd_;       // the shadow rings' memory (a memfd the back end maps too)
  Mapping shadow_map_;
  uint64_t backend_features_ = 0;
  uint64_t protocol_features_ = 0;
  uint64_t guest_features_ = 0;
  uint16_t num_queues_ = 1;
  std::vector<uint8_t> config_;
  std::vector<UniqueFd> kick_fds_;  // one eventfd per queue: Notify writes, the back end reads
  std::vector<UniqueFd> call_fds_;  // one eventfd per queue: the back end writes, the worker reads
  std::vector<UniqueFd> guest_kick_fds_;  // shadow rings: Notify writes, the worker reads
  UniqueFd stop_fd_;
  std::atomic<bool> daemon_failed_{false};

  absl::Mutex mu_;
  vhost_user::Connection conn_ ABSL_GUARDED_BY(mu_);
  std::vector<uint16_t> started_ ABSL_GUARDED_BY(mu_);  // queues the back end runs
  std::function<void()> used_buffer_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<ShadowVirtqueue>> shadows_ ABSL_GUARDED_BY(mu_);  // by queue index; shadow mode
  // Direct rings: the used indexes of the started queues (claimed under mu_, read without it by PollUsed).
  UsedIndexWatch used_watch_;
  static_assert(UsedIndexWatch::kMaxQueues >= kMaxQueues, "every queue's used index must be watched");
  std::thread worker_;
};

}  // namespace coalesce
