#include "devmodel/vhost_user/vhost_user_blk.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {

namespace vu = vhost_user;

namespace {

constexpr uint64_t kPassedBlkFeatures = kBlkFeatureSizeMax | kBlkFeatureSegMax | kBlkFeatureGeometry |
                                        kBlkFeatureRo | kBlkFeatureBlkSize | kBlkFeatureFlush |
                                        kBlkFeatureTopology | kBlkFeatureMq | kBlkFeatureDiscard |
                                        kBlkFeatureWriteZeroes;
constexpr uint64_t kPassedRingFeatures =
    virtio::kFeatureIndirectDesc | virtio::kFeatureEventIdx | virtio::kFeatureVersion1;
constexpr uint64_t kWantedProtocolFeatures = vu::kProtocolMq | vu::kProtocolReplyAck | vu::kProtocolConfig;
constexpr size_t kConfigSizeMaxOffset = 8;  // struct virtio_blk_config: le64 capacity, then le32 size_max
constexpr size_t kConfigNumQueuesOffset = 34;

absl::StatusOr<UniqueFd> MakeEventFd() {
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd.valid()) return ErrnoStatus("eventfd");
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VhostUserBlk>> VhostUserBlk::Create(std::unique_ptr<StorageDaemon> daemon,
                                                                   const GuestMemory* memory, const Options& options) {
  StorageDaemon* d = daemon.get();
  absl::StatusOr<vu::Connection> conn =
      vu::Connection::Connect(d->socket_path(), absl::Seconds(10), [d] { return d->Health(); });
  if (!conn.ok()) {
    // A daemon that exited while we waited explains better than the connect error.
    RETURN_IF_ERROR(d->Health());
    return conn.status();
  }
  RETURN_IF_ERROR(d->DenyOtherWriters());
  std::unique_ptr<VhostUserBlk> blk(new VhostUserBlk(std::move(daemon), memory, options, std::move(*conn)));
  if (absl::Status st = blk->Negotiate(); !st.ok()) {
    RETURN_IF_ERROR(blk->daemon_->Health());
    return absl::Status(st.code(), absl::StrFormat("disk %s: %s", blk->daemon_->disk().path, st.message()));
  }
  for (uint16_t q = 0; q < blk->num_queues_; ++q) {
    ASSIGN_OR_RETURN(UniqueFd kick, MakeEventFd());
    ASSIGN_OR_RETURN(UniqueFd call, MakeEventFd());
    blk->kick_fds_.push_back(std::move(kick));
    blk->call_fds_.push_back(std::move(call));
    if (blk->shadow_rings()) {
      ASSIGN_OR_RETURN(UniqueFd guest_kick, MakeEventFd());
      blk->guest_kick_fds_.push_back(std::move(guest_kick));
    }
  }
  if (blk->shadow_rings()) RETURN_IF_ERROR(blk->CreateShadowMemory());
  ASSIGN_OR_RETURN(blk->stop_fd_, MakeEventFd());
  blk->worker_ = std::thread([b = blk.get()] { b->WorkerLoop(); });
  return blk;
}

VhostUserBlk::VhostUserBlk(std::unique_ptr<StorageDaemon> daemon, const GuestMemory* memory, const Options& options,
                           vu::Connection conn)
    : daemon_(std::move(daemon)),
      memory_(memory),
      name_(options.name),
      guard_(options.shadow_guard),
      conn_(std::move(conn)) {}

VhostUserBlk::~VhostUserBlk() {
  if (worker_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof(one));
    worker_.join();
  }
  absl::MutexLock lock(&mu_);
  shadows_.clear();  // releases what a request in flight still holds
}

absl::Status VhostUserBlk::CreateShadowMemory() {
  const uint64_t bytes = ShadowVirtqueue::ShadowBytes(kQueueSize) * num_queues_;
  shadow_fd_.Reset(::memfd_create("coalesce-shadow-rings", MFD_CLOEXEC));
  if (!shadow_fd_.valid()) return ErrnoStatus("memfd_create (shadow rings)");
  if (::ftruncate(shadow_fd_.get(), static_cast<off_t>(bytes)) != 0) return ErrnoStatus("ftruncate (shadow rings)");
  ASSIGN_OR_RETURN(shadow_map_, Mapping::Map(bytes, PROT_READ | PROT_WRITE, MAP_SHARED, shadow_fd_.get(), 0,
                                                 "shadow rings"));
  return absl::OkStatus();
}

absl::Status VhostUserBlk::Negotiate() {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(conn_.Send(vu::EncodeHeaderOnly(vu::Request::kSetOwner)));
  ASSIGN_OR_RETURN(backend_features_,
                   conn_.CallU64(vu::Request::kGetFeatures, vu::EncodeHeaderOnly(vu::Request::kGetFeatures)));
  if (!(backend_features_ & virtio::kFeatureVersion1)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("the vhost-user back end does not offer VIRTIO_F_VERSION_1 (features %#x)", backend_features_));
  }
  if (!(backend_features_ & vu::kFeatureProtocolFeatures)) {
    return absl::FailedPreconditionError("the vhost-user back end lacks protocol features (needed for GET_CONFIG)");
  }
  ASSIGN_OR_RETURN(uint64_t offered, conn_.CallU64(vu::Request::kGetProtocolFeatures,
                                                   vu::EncodeHeaderOnly(vu::Request::kGetProtocolFeatures)));
  if (!(offered & vu::kProtocolConfig)) {
    return absl::FailedPreconditionError("the vhost-user back end cannot report its configuration (no CONFIG)");
  }
  protocol_features_ = offered & kWantedProtocolFeatures;
  RETURN_IF_ERROR(conn_.Send(vu::EncodeU64(vu::Request::kSetProtocolFeatures, protocol_features_)));
  uint64_t backend_queues = 1;
  if (protocol_features_ & vu::kProtocolMq) {
    ASSIGN_OR_RETURN(backend_queues,
                     conn_.CallU64(vu::Request::kGetQueueNum, vu::EncodeHeaderOnly(vu::Request::kGetQueueNum)));
  }
  RETURN_IF_ERROR(conn_.Send(vu::EncodeGetConfig(0, kConfigSize)));
  ASSIGN_OR_RETURN(std::vector<uint8_t> reply, conn_.ReadReply(vu::Request::kGetConfig));
  ASSIGN_OR_RETURN(config_, vu::DecodeConfig(reply, kConfigSize));

  guest_features_ = backend_features_ & (kPassedBlkFeatures | kPassedRingFeatures);
  // qemu-storage-daemon offers VIRTIO_BLK_F_SIZE_MAX with a size_max of 0, its way of saying "no limit"; Linux
  // (6.1) takes the 0 as the limit, raises it to one page, and so splits a 1 MiB request into three (126 segments
  // of 4 KiB each at most). A zero is no size a driver can honour: the guest is not offered the feature then.
  if (ConfigField(kConfigSizeMaxOffset, 4) == 0) guest_features_ &= ~kBlkFeatureSizeMax;
  // Shadow rings forward every request as the guest makes it available: no notification suppression or indirect
  // tables to translate.
  if (shadow_rings()) guest_features_ &= ~(virtio::kFeatureEventIdx | virtio::kFeatureIndirectDesc);
  num_queues_ = 1;
  if (guest_features_ & kBlkFeatureMq) {
    const uint64_t in_config = ConfigField(kConfigNumQueuesOffset, 2);
    num_queues_ = static_cast<uint16_t>(std::clamp<uint64_t>(
        std::min<uint64_t>({in_config, backend_queues, kMaxQueues}), 1, kMaxQueues));
    config_[kConfigNumQueuesOffset] = static_cast<uint8_t>(num_queues_);
    config_[kConfigNumQueuesOffset + 1] = static_cast<uint8_t>(num_queues_ >> 8);
  }
  LOG_INFO("%s: %s (%s%s), %u sectors, %u queue(s), features %#x (back end %#x, protocol %#x)", name_,
           daemon_->disk().path, DiskFormatName(daemon_->format()), daemon_->disk().readonly ? ", read-only" : "",
           capacity_sectors(), num_queues_, guest_features_, backend_features_, offered);
  return absl::OkStatus();
}

uint64_t VhostUserBlk::ConfigField(size_t offset, size_t bytes) const {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(config_[offset + i]) << (8 * i);
  return v;
}

uint64_t VhostUserBlk::capacity_sectors() const { return ConfigField(0, 8); }

void VhostUserBlk::ReadConfig(uint64_t offset, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < config_.size() ? config_[offset + i] : 0;
}

void VhostUserBlk::WriteConfig(uint64_t offset, std::span<const uint8_t> data) {
  // Only `wce` is writable in virtio-blk, and CONFIG_WCE is not offered: nothing to do.
  LOG_DEBUG("%s: %zu-byte config write at %#x ignored", name_, data.size(), offset);
}

absl::StatusOr<uint64_t> VhostUserBlk::HostAddress(uint64_t gpa, uint64_t len) const {
  ASSIGN_OR_RETURN(std::span<uint8_t> span, memory_->HostSpan(gpa, len));
  return reinterpret_cast<uint64_t>(span.data());
}

absl::Status VhostUserBlk::Activate(uint64_t driver_features, const std::vector<virtio::QueueConfig>& queues,
                                    std::function<void()> used_buffer) {
  absl::MutexLock lock(&mu_);
  if (daemon_failed_.load()) return absl::UnavailableError(absl::StrFormat("%s: the storage daemon is gone", name_));
  RETURN_IF_ERROR(conn_.Send(
      vu::EncodeU64(vu::Request::kSetFeatures, driver_features | (backend_features_ & vu::kFeatureProtocolFeatures))));
  std::vector<vu::MemRegion> regions;
  std::vector<int> fds;
  for (const MemoryRegion& r : memory_->regions()) {
    regions.push_back({r.guest_phys, r.size, reinterpret_cast<uint64_t>(memory_->host_base() + r.file_offset),
                       r.file_offset});
    fds.push_back(memory_->memfd());
  }
  if (shadow_rings()) {
    regions.push_back({kShadowGpa, shadow_map_.size(), reinterpret_cast<uint64_t>(shadow_map_.data()), 0});
    fds.push_back(shadow_fd_.get());
  }
  const bool ack = protocol_features_ & vu::kProtocolReplyAck;
  ASSIGN_OR_RETURN(std::vector<uint8_t> table, vu::EncodeMemTable(regions, ack ? vu::kFlagNeedReply : 0));
  if (ack) {
    RETURN_IF_ERROR(conn_.SendAcked(vu::Request::kSetMemTable, table, fds));
  } else {
    RETURN_IF_ERROR(conn_.Send(table, fds));
  }
  const bool event_idx = (driver_features & virtio::kFeatureEventIdx) != 0;
  for (const virtio::QueueConfig& q : queues) RETURN_IF_ERROR(StartQueue(q, event_idx));
  used_buffer_ = std::move(used_buffer);
  return absl::OkStatus();
}

absl::Status VhostUserBlk::StartQueue(const virtio::QueueConfig& q, bool event_idx) {
  if (q.index >= num_queues_) return absl::InvalidArgumentError(absl::StrFormat("queue %u does not exist", q.index));
  uint64_t desc, avail, used;
  if (shadow_rings()) {
    const uint64_t bytes = ShadowVirtqueue::ShadowBytes(kQueueSize);
    uint8_t* mem = shadow_map_.data() + bytes * q.index;
    std::memset(mem, 0, bytes);
    if (shadows_.size() < num_queues_) shadows_.resize(num_queues_);
    shadows_[q.index] = std::make_unique<ShadowVirtqueue>(memory_, q, mem, guard_);
    desc = shadows_[q.index]->desc_addr();
    avail = shadows_[q.index]->avail_addr();
    used = shadows_[q.index]->used_addr();
  } else {
    ASSIGN_OR_RETURN(desc, HostAddress(q.desc, 16ULL * q.size));
    ASSIGN_OR_RETURN(avail, HostAddress(q.driver, 6 + 2ULL * q.size));
    ASSIGN_OR_RETURN(used, HostAddress(q.device, 6 + 8ULL * q.size));
  }
  if (!shadow_rings()) {
    // struct virtq_used { le16 flags; le16 idx; ... } and struct virtq_avail { le16 flags; le16 idx;
    // le16 ring[size]; le16 used_event; }: x86 is little-endian, the fields are read as they lie.
    used_watch_.Watch(q.index, {.used_idx = reinterpret_cast<const uint16_t*>(used + 2),
                                .avail_flags = reinterpret_cast<const uint16_t*>(avail),
                                .used_event = event_idx ? reinterpret_cast<const uint16_t*>(avail + 4 + 2ULL * q.size)
                                                        : nullptr});
  }
  RETURN_IF_ERROR(conn_.Send(vu::EncodeVringState(vu::Request::kSetVringNum, q.index, q.size)));
  RETURN_IF_ERROR(conn_.Send(vu::EncodeVringState(vu::Request::kSetVringBase, q.index, 0)));
  RETURN_IF_ERROR(conn_.Send(vu::EncodeVringAddr({.index = q.index,
                                                  .flags = 0,
                                                  .desc_user_addr = desc,
                                                  .used_user_addr = used,
                                                  .avail_user_addr = avail,
                                                  .log_guest_addr = 0})));
  const int kick = kick_fds_[q.index].get();
  const int call = call_fds_[q.index].get();
  RETURN_IF_ERROR(conn_.Send(vu::EncodeU64(vu::Request::kSetVringKick, q.index), std::span<const int>(&kick, 1)));
  RETURN_IF_ERROR(conn_.Send(vu::EncodeU64(vu::Request::kSetVringCall, q.index), std::span<const int>(&call, 1)));
  // With protocol features negotiated, rings start disabled (vhost-user.rst, "Ring states").
  RETURN_IF_ERROR(conn_.Send(vu::EncodeVringState(vu::Request::kSetVringEnable, q.index, 1)));
  started_.push_back(q.index);
  return absl::OkStatus();
}

void VhostUserBlk::Notify(uint16_t queue) {
  if (queue >= kick_fds_.size()) return;
  const uint64_t one = 1;
  // EAGAIN only when the counter is saturated, i.e. the reader has a kick pending anyway. With shadow rings the
  // worker moves the requests (it may wait for pages; a vCPU or a peer's receiver thread must not).
  (void)!::write((shadow_rings() ? guest_kick_fds_ : kick_fds_)[queue].get(), &one, sizeof(one));
}

int VhostUserBlk::notify_eventfd(uint16_t queue) const {
  if (queue >= kick_fds_.size()) return -1;
  return (shadow_rings() ? guest_kick_fds_ : kick_fds_)[queue].get();
}

void VhostUserBlk::Reset() {
  absl::MutexLock lock(&mu_);
  used_buffer_ = nullptr;
  used_watch_.Clear();
  if (!daemon_failed_.load()) {
    // GET_VRING_BASE stops a ring; its reply says the back end no longer touches it.
    for (uint16_t q : started_) {
      absl::Status st = conn_.Send(vu::EncodeVringState(vu::Request::kGetVringBase, q, 0));
      absl::StatusOr<std::vector<uint8_t>> reply = st.ok() ? conn_.ReadReply(vu::Request::kGetVringBase)
                                                           : absl::StatusOr<std::vector<uint8_t>>(st);
      if (!reply.ok()) {
        LOG_ERROR("%s: stopping queue %u: %s", name_, q, reply.status().ToString());
        break;
      }
    }
  }
  started_.clear();
  shadows_.clear();  // the back end has stopped the rings: release the pages of abandoned requests
}

void VhostUserBlk::OnGuestKick(uint16_t q) {
  if (q >= shadows_.size() || !shadows_[q]) return;
  bool completed = false;
  absl::StatusOr<int> forwarded = shadows_[q]->ForwardAvailable(&completed);
  if (!forwarded.ok()) {
    LOG_ERROR_SAMPLED("%s: queue %u: %s", name_, q, forwarded.status().ToString());
    return;
  }
  if (*forwarded > 0) {
    const uint64_t one = 1;
    (void)!::write(kick_fds_[q].get(), &one, sizeof(one));
  }
  if (completed && used_buffer_) used_buffer_();
}

bool VhostUserBlk::PollUsed() {
  if (shadow_rings() || !used_watch_.AnyWanted()) return false;
  // Busy: the worker is raising, or a start, reset or failure is under way; the back end's call still comes.
  if (!mu_.TryLock()) return false;
  const bool raise = used_watch_.ClaimWanted() && used_buffer_;
  if (raise) used_buffer_();
  mu_.Unlock();
  return raise;
}

void VhostUserBlk::OnBackendCall(uint16_t q) {
  if (!shadow_rings()) {
    // A polling vCPU may have raised these entries already (PollUsed): then the call brings nothing new.
    if (used_watch_.Claim() && used_buffer_) used_buffer_();
    return;
  }
  if (q >= shadows_.size() || !shadows_[q]) return;
  absl::StatusOr<int> returned = shadows_[q]->ReturnUsed();
  if (!returned.ok()) {
    LOG_ERROR_SAMPLED("%s: queue %u: %s", name_, q, returned.status().ToString());
    return;
  }
  if (*returned > 0 && used_buffer_) used_buffer_();
  // Chains that waited for shadow descriptors (only a driver reusing descriptors in flight makes them wait).
  if (*returned > 0) OnGuestKick(q);
}

void VhostUserBlk::OnDaemonExit() {
  absl::Status why = daemon_->Health();
  daemon_failed_.store(true);
  if (!shadow_rings()) {
    LOG_ERROR("%s: %s; requests in flight stay unanswered", name_, why.ToString());
    return;
  }
  constexpr uint8_t kStatusIoErr = 1;  // VIRTIO_BLK_S_IOERR
  int failed = 0;
  for (auto& sq : shadows_) {
    if (sq) failed += sq->FailAll(kStatusIoErr);
  }
  LOG_ERROR("%s: %s; %d request(s) in flight and every later one fail with an I/O error", name_, why.ToString(),
            failed);
  if (failed > 0 && used_buffer_) used_buffer_();
}

void VhostUserBlk::WorkerLoop() {
  // Slots: [0, n) guest kicks (shadow rings only), then the back end's calls, the daemon, stop.
  std::vector<pollfd> fds;
  for (const UniqueFd& fd : guest_kick_fds_) fds.push_back({fd.get(), POLLIN, 0});
  const size_t first_call = fds.size();
  for (const UniqueFd& fd : call_fds_) fds.push_back({fd.get(), POLLIN, 0});
  const size_t daemon_slot = fds.size();
  fds.push_back({daemon_->pidfd(), POLLIN, 0});
  const size_t stop_slot = fds.size();
  fds.push_back({stop_fd_.get(), POLLIN, 0});
  while (true) {
    const int r = ::poll(fds.data(), fds.size(), -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR("%s: poll: %s", name_, std::strerror(errno));
      return;
    }
    if (fds[stop_slot].revents) return;
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < daemon_slot; ++i) {
      if (!fds[i].revents) continue;
      uint64_t count;
      if (::read(fds[i].fd, &count, sizeof(count)) != sizeof(count)) continue;
      if (i < first_call) {
        OnGuestKick(static_cast<uint16_t>(i));
      } else {
        OnBackendCall(static_cast<uint16_t>(i - first_call));
      }
    }
    if (fds[daemon_slot].revents) {
      OnDaemonExit();
      fds[daemon_slot].fd = -1;  // poll ignores it from now on
    }
  }
}

}  // namespace coalesce
