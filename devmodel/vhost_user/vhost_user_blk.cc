#include "devmodel/vhost_user/vhost_user_blk.h"

#include <poll.h>
#include <sys/eventfd.h>
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
constexpr size_t kConfigNumQueuesOffset = 34;

absl::StatusOr<UniqueFd> MakeEventFd() {
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd.valid()) return ErrnoStatus("eventfd");
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VhostUserBlk>> VhostUserBlk::Create(std::unique_ptr<StorageDaemon> daemon,
                                                                   const GuestMemory* memory, std::string name) {
  StorageDaemon* d = daemon.get();
  absl::StatusOr<vu::Connection> conn =
      vu::Connection::Connect(d->socket_path(), absl::Seconds(10), [d] { return d->Health(); });
  if (!conn.ok()) {
    // A daemon that exited while we waited explains better than the connect error.
    RETURN_IF_ERROR(d->Health());
    return conn.status();
  }
  RETURN_IF_ERROR(d->DenyOtherWriters());
  std::unique_ptr<VhostUserBlk> blk(new VhostUserBlk(std::move(daemon), memory, std::move(name), std::move(*conn)));
  if (absl::Status st = blk->Negotiate(); !st.ok()) {
    RETURN_IF_ERROR(blk->daemon_->Health());
    return absl::Status(st.code(), absl::StrFormat("disk %s: %s", blk->daemon_->disk().path, st.message()));
  }
  for (uint16_t q = 0; q < blk->num_queues_; ++q) {
    ASSIGN_OR_RETURN(UniqueFd kick, MakeEventFd());
    ASSIGN_OR_RETURN(UniqueFd call, MakeEventFd());
    blk->kick_fds_.push_back(std::move(kick));
    blk->call_fds_.push_back(std::move(call));
  }
  ASSIGN_OR_RETURN(blk->stop_fd_, MakeEventFd());
  blk->completion_thread_ = std::thread([b = blk.get()] { b->CompletionLoop(); });
  return blk;
}

VhostUserBlk::VhostUserBlk(std::unique_ptr<StorageDaemon> daemon, const GuestMemory* memory, std::string name,
                           vu::Connection conn)
    : daemon_(std::move(daemon)), memory_(memory), name_(std::move(name)), conn_(std::move(conn)) {}

VhostUserBlk::~VhostUserBlk() {
  if (completion_thread_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof(one));
    completion_thread_.join();
  }
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
  num_queues_ = 1;
  if (guest_features_ & kBlkFeatureMq) {
    const uint16_t in_config = static_cast<uint16_t>(config_[kConfigNumQueuesOffset] |
                                                     (config_[kConfigNumQueuesOffset + 1] << 8));
    num_queues_ = static_cast<uint16_t>(std::clamp<uint64_t>(
        std::min<uint64_t>({in_config, backend_queues, kMaxQueues}), 1, kMaxQueues));
    config_[kConfigNumQueuesOffset] = static_cast<uint8_t>(num_queues_);
    config_[kConfigNumQueuesOffset + 1] = static_cast<uint8_t>(num_queues_ >> 8);
  }
  LOG_INFO("%s: %s (%s%s), %u sectors, %u queue(s), features %#x", name_, daemon_->disk().path,
           DiskFormatName(daemon_->format()), daemon_->disk().readonly ? ", read-only" : "", capacity_sectors(),
           num_queues_, guest_features_);
  return absl::OkStatus();
}

uint64_t VhostUserBlk::capacity_sectors() const {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(config_[i]) << (8 * i);
  return v;
}

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
  const bool ack = protocol_features_ & vu::kProtocolReplyAck;
  ASSIGN_OR_RETURN(std::vector<uint8_t> table, vu::EncodeMemTable(regions, ack ? vu::kFlagNeedReply : 0));
  if (ack) {
    RETURN_IF_ERROR(conn_.SendAcked(vu::Request::kSetMemTable, table, fds));
  } else {
    RETURN_IF_ERROR(conn_.Send(table, fds));
  }
  for (const virtio::QueueConfig& q : queues) RETURN_IF_ERROR(StartQueue(q));
  used_buffer_ = std::move(used_buffer);
  return absl::OkStatus();
}

absl::Status VhostUserBlk::StartQueue(const virtio::QueueConfig& q) {
  if (q.index >= num_queues_) return absl::InvalidArgumentError(absl::StrFormat("queue %u does not exist", q.index));
  ASSIGN_OR_RETURN(uint64_t desc, HostAddress(q.desc, 16ULL * q.size));
  ASSIGN_OR_RETURN(uint64_t avail, HostAddress(q.driver, 6 + 2ULL * q.size));
  ASSIGN_OR_RETURN(uint64_t used, HostAddress(q.device, 6 + 8ULL * q.size));
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
  // EAGAIN only when the counter is saturated, i.e. the back end has a kick pending anyway.
  (void)!::write(kick_fds_[queue].get(), &one, sizeof(one));
}

void VhostUserBlk::Reset() {
  absl::MutexLock lock(&mu_);
  used_buffer_ = nullptr;
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
}

void VhostUserBlk::CompletionLoop() {
  std::vector<pollfd> fds;
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
    bool used = false;
    for (size_t i = 0; i < daemon_slot; ++i) {
      if (!fds[i].revents) continue;
      uint64_t count;
      if (::read(fds[i].fd, &count, sizeof(count)) == sizeof(count)) used = true;
    }
    if (used) {
      absl::MutexLock lock(&mu_);
      if (used_buffer_) used_buffer_();
    }
    if (fds[daemon_slot].revents) {
      absl::Status why = daemon_->Health();
      LOG_ERROR("%s: %s; its requests fail from now on", name_, why.ToString());
      daemon_failed_.store(true);
      fds[daemon_slot].fd = -1;  // poll ignores it from now on
    }
  }
}

}  // namespace coalesce
