#include "devmodel/virtio/virtio_net_tap.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {
namespace {

constexpr uint16_t kRxQueue = 0;
constexpr uint16_t kTxQueue = 1;

absl::StatusOr<std::array<uint8_t, 6>> ParseMac(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  std::array<uint8_t, 6> mac{};
  if (parts.size() != 6) return absl::InvalidArgumentError(absl::StrFormat("mac '%s': six hex bytes", text));
  for (size_t i = 0; i < 6; ++i) {
    int v = 0;
    if (parts[i].size() != 2 || !absl::SimpleHexAtoi(parts[i], &v)) {
      return absl::InvalidArgumentError(absl::StrFormat("mac '%s': six hex bytes", text));
    }
    mac[i] = static_cast<uint8_t>(v);
  }
  if (mac[0] & 1) return absl::InvalidArgumentError(absl::StrFormat("mac '%s' is a multicast address", text));
  return mac;
}

}  // namespace

absl::StatusOr<NetSpec> ParseNetSpec(std::string_view arg) {
  NetSpec spec;
  for (absl::string_view part : absl::StrSplit(absl::string_view(arg.data(), arg.size()), ',')) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (kv.first == "tap") {
      if (kv.second.empty() || kv.second.size() >= IFNAMSIZ) {
        return absl::InvalidArgumentError(absl::StrFormat("--net %s: tap name of 1 to %d characters", arg, IFNAMSIZ - 1));
      }
      spec.tap = std::string(kv.second);
    } else if (kv.first == "mac") {
      absl::StatusOr<std::array<uint8_t, 6>> mac = ParseMac(kv.second);
      if (!mac.ok()) return absl::InvalidArgumentError(absl::StrFormat("--net %s: %s", arg, mac.status().message()));
      spec.mac = *mac;
    } else {
      return absl::InvalidArgumentError(absl::StrFormat("--net %s: unknown option '%s' (tap=, mac=)", arg, part));
    }
  }
  if (spec.tap.empty()) return absl::InvalidArgumentError(absl::StrFormat("--net %s: needs tap=NAME", arg));
  return spec;
}

absl::StatusOr<std::unique_ptr<VirtioNetTap>> VirtioNetTap::Create(const NetSpec& spec,
                                                                   std::array<uint8_t, 6> default_mac,
                                                                   const GuestMemory* memory, std::string name) {
  UniqueFd tap(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!tap.valid()) {
    return absl::FailedPreconditionError(
        ErrnoStatus(absl::StrFormat("--net tap=%s: /dev/net/tun", spec.tap)).message());
  }
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, spec.tap.c_str(), spec.tap.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  if (::ioctl(tap.get(), TUNSETIFF, &ifr) != 0) {
    return absl::FailedPreconditionError(
        ErrnoStatus(absl::StrFormat("--net tap=%s: attaching to the TAP interface", spec.tap)).message());
  }
  std::unique_ptr<VirtioNetTap> dev(
      new VirtioNetTap(std::move(tap), spec.mac.value_or(default_mac), memory, std::move(name)));
  for (UniqueFd& fd : dev->kick_fds_) {
    fd.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd.valid()) return ErrnoStatus("eventfd");
  }
  dev->stop_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!dev->stop_fd_.valid()) return ErrnoStatus("eventfd");
  dev->worker_ = std::thread([d = dev.get()] { d->WorkerLoop(); });
  return dev;
}

VirtioNetTap::~VirtioNetTap() {
  if (worker_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof(one));
    worker_.join();
  }
}

void VirtioNetTap::ReadConfig(uint64_t offset, std::span<uint8_t> data) {
  // struct virtio_net_config: mac[6] (the only field with the features offered).
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < mac_.size() ? mac_[offset + i] : 0;
}

void VirtioNetTap::WriteConfig(uint64_t offset, std::span<const uint8_t> data) {
  LOG_DEBUG("%s: %zu-byte config write at %#x ignored", name_, data.size(), offset);
}

absl::Status VirtioNetTap::Activate(uint64_t /*driver_features*/, const std::vector<virtio::QueueConfig>& queues,
                                    std::function<void()> used_buffer) {
  absl::MutexLock lock(&mu_);
  for (const virtio::QueueConfig& q : queues) {
    if (q.index == kRxQueue) rx_.emplace(memory_, q);
    if (q.index == kTxQueue) tx_.emplace(memory_, q);
  }
  used_buffer_ = std::move(used_buffer);
  rx_starved_ = false;
  // Frames the driver queued before DRIVER_OK, and receive buffers it already gave.
  const uint64_t one = 1;
  (void)!::write(kick_fds_[kTxQueue].get(), &one, sizeof(one));
  return absl::OkStatus();
}

void VirtioNetTap::Notify(uint16_t queue) {
  if (queue >= 2) return;
  const uint64_t one = 1;
  (void)!::write(kick_fds_[queue].get(), &one, sizeof(one));
}

int VirtioNetTap::notify_eventfd(uint16_t queue) const { return queue < 2 ? kick_fds_[queue].get() : -1; }

void VirtioNetTap::Reset() {
  absl::MutexLock lock(&mu_);
  rx_.reset();
  tx_.reset();
  used_buffer_ = nullptr;
  pending_.clear();
  rx_starved_ = false;
}

VirtioNetTap::Counters VirtioNetTap::counters() const {
  absl::MutexLock lock(&mu_);
  return counters_;
}

void VirtioNetTap::Complete(virtio::Virtqueue& q) {
  if (!q.has_unpublished()) return;
  if (absl::Status st = q.Publish(); !st.ok()) {
    LOG_ERROR("%s: queue %u: %s", name_, q.index(), st.ToString());
    return;
  }
  if (used_buffer_) used_buffer_();
}

void VirtioNetTap::Transmit() {
  if (!tx_) return;
  while (true) {
    absl::StatusOr<std::optional<virtio::Chain>> chain = tx_->Pop();
    if (!chain.ok()) {
      LOG_ERROR_SAMPLED("%s: transmit queue: %s", name_, chain.status().ToString());
      break;
    }
    if (!chain->has_value()) break;
    absl::StatusOr<std::vector<uint8_t>> frame = tx_->ReadAll(**chain, kHeaderSize + kMaxFrame);
    if (frame.ok() && frame->size() > kHeaderSize) {
      // A full TAP queue drops the frame, as a NIC's full ring would; TCP resends it.
      if (::write(tap_.get(), frame->data() + kHeaderSize, frame->size() - kHeaderSize) > 0) ++counters_.tx_frames;
    }
    if (absl::Status st = tx_->Push((*chain)->head, 0); !st.ok()) {
      LOG_ERROR("%s: transmit queue: %s", name_, st.ToString());
      break;
    }
  }
  Complete(*tx_);
}

void VirtioNetTap::Receive() {
  if (!rx_) return;
  while (true) {
    if (pending_.empty()) {
      pending_.resize(kHeaderSize + kMaxFrame);
      const ssize_t n = ::read(tap_.get(), pending_.data() + kHeaderSize, kMaxFrame);
      if (n <= 0) {
        pending_.clear();
        if (n < 0 && errno != EAGAIN && errno != EINTR) LOG_WARN("%s: TAP read: %s", name_, std::strerror(errno));
        break;
      }
      pending_.resize(kHeaderSize + static_cast<size_t>(n));
      std::memset(pending_.data(), 0, kHeaderSize);
      pending_[10] = 1;  // num_buffers
    }
    absl::StatusOr<std::optional<virtio::Chain>> chain = rx_->Pop();
    if (!chain.ok()) {
      LOG_ERROR_SAMPLED("%s: receive queue: %s", name_, chain.status().ToString());
      break;
    }
    if (!chain->has_value()) {
      rx_starved_ = true;  // keep the frame; read on when the driver adds buffers
      break;
    }
    absl::StatusOr<uint32_t> written = rx_->WriteAll(**chain, pending_);
    if (!written.ok() || *written < pending_.size()) ++counters_.rx_dropped;  // a buffer too small: truncated
    else ++counters_.rx_frames;
    pending_.clear();
    if (absl::Status st = rx_->Push((*chain)->head, written.ok() ? *written : 0); !st.ok()) {
      LOG_ERROR("%s: receive queue: %s", name_, st.ToString());
      break;
    }
  }
  Complete(*rx_);
}

void VirtioNetTap::WorkerLoop() {
  while (true) {
    bool read_tap;
    {
      absl::MutexLock lock(&mu_);
      read_tap = rx_.has_value() && !rx_starved_;
    }
    pollfd fds[4] = {{kick_fds_[kRxQueue].get(), POLLIN, 0},
                     {kick_fds_[kTxQueue].get(), POLLIN, 0},
                     {read_tap ? tap_.get() : -1, POLLIN, 0},
                     {stop_fd_.get(), POLLIN, 0}};
    const int r = ::poll(fds, 4, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR("%s: poll: %s", name_, std::strerror(errno));
      return;
    }
    if (fds[3].revents) return;
    uint64_t count;
    absl::MutexLock lock(&mu_);
    if (fds[0].revents && ::read(fds[0].fd, &count, sizeof(count)) == sizeof(count)) rx_starved_ = false;
    if (fds[1].revents && ::read(fds[1].fd, &count, sizeof(count)) == sizeof(count)) Transmit();
    if (fds[0].revents || fds[2].revents) Receive();
  }
}

}  // namespace coalesce
