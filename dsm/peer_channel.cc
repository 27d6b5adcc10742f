#include "dsm/peer_channel.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <optional>

#include "absl/strings/str_format.h"
#include "dsm/frame_io.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/thread_name.h"

namespace coalesce::dsm {
namespace {

int64_t NowNs() { return absl::ToUnixNanos(absl::Now()); }

}  // namespace

absl::Status PeerChannel::ConfigureSocket(int fd, absl::Duration send_timeout) {
  int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) return ErrnoStatus("TCP_NODELAY");
  int lowat = kNotSentLowWater;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat)) < 0) {
    return ErrnoStatus("TCP_NOTSENT_LOWAT");
  }
  timeval tv = absl::ToTimeval(send_timeout);
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) return ErrnoStatus("SO_SNDTIMEO");
  return absl::OkStatus();
}

PeerChannel::PeerChannel(NodeId self, NodeId peer, UniqueFd sock, ChannelCipher cipher, const LinkEmulation& link,
                         DsmStats* stats, Callbacks cb, std::vector<PageSpan> never_send)
    : self_(self),
      peer_(peer),
      sock_(std::move(sock)),
      sealer_(std::move(cipher.send)),
      opener_(std::move(cipher.receive)),
      never_send_(std::move(never_send)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      emulate_(link.enabled()),
      stats_(stats),
      cb_(std::move(cb)),
      shaper_(link, /*seed=*/(uint64_t{self} << 16) | peer),
      last_rx_ns_(NowNs()),
      last_tx_ns_(NowNs()) {}

bool PeerChannel::Drain(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (unsent_.load(std::memory_order_acquire) > 0 && !closed_ && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  return unsent_.load(std::memory_order_acquire) == 0;
}

absl::Status PeerChannel::SetLinkEmulation(const LinkEmulation& link) {
  if (!emulate_) {
    return absl::FailedPreconditionError(
        absl::StrFormat("the link to node %u was started without emulation (start the VM with --link)", peer_));
  }
  {
    absl::MutexLock lock(&queue_mu_);
    shaper_.SetLink(link);
  }
  Kick();
  return absl::OkStatus();
}

PeerChannel::~PeerChannel() { CloseAndJoin(absl::CancelledError("channel destroyed")); }

void PeerChannel::CloseAndJoin(const absl::Status& why) {
  Close(why);
  stop_ = true;
  Kick();
  // The owner (Transport::Shutdown) joins before it drops its reference, so the destructor never runs on one of
  // these threads with them still joinable.
  if (sender_.joinable()) sender_.join();
  if (receiver_.joinable()) receiver_.join();
}

void PeerChannel::Start() {
  receiver_ = StartNamedThread("dsm-recv", [this] { ReceiveLoop(); });
  sender_ = StartNamedThread("dsm-send", [this] { SendLoop(); });
}

void PeerChannel::Kick() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
}

void PeerChannel::Close(const absl::Status& why) {
  {
    absl::MutexLock l(&close_mu_);
    if (close_reason_.ok()) close_reason_ = why.ok() ? absl::CancelledError("closed") : why;
  }
  if (!closed_.exchange(true)) {
    // Wakes the receiver (recv returns 0) and fails any writer; the fd itself is closed by the destructor, after
    // both threads are gone, so no thread ever uses a recycled fd number.
    ::shutdown(sock_.get(), SHUT_RDWR);
    Kick();
  }
}

absl::Status PeerChannel::WriteMessage(const Message& m) {
  absl::MutexLock l(&write_mu_);
  return WriteLocked(m);
}

absl::Status PeerChannel::WriteLocked(const Message& m) {
  WireHeader h = MakeHeader(m.type, self_, m.page, m.arg, m.flags, static_cast<uint32_t>(m.payload.size()), m.seq);
  if (closed_) return absl::UnavailableError(absl::StrFormat("connection to node %u is closed", peer_));
  if (!m.payload.empty() && (m.type == MsgType::kPageData || m.type == MsgType::kEvictReq)) {
    for (const auto& [first, end] : never_send_) {
      if (m.page >= first && m.page < end) {
        stats_->home_only_refusals.fetch_add(1, std::memory_order_relaxed);
        absl::Status s = absl::PermissionDeniedError(absl::StrFormat(
            "page %u is home-only memory: its contents never leave this node (refused to send it to node %u)",
            m.page, peer_));
        LOG_ERROR("dsm node %u: %s", self_, s.message());
        Close(s);
        return s;
      }
    }
  }
  iovec iov[2] = {{&h, sizeof(h)}, {const_cast<uint8_t*>(m.payload.data()), m.payload.size()}};
  int iovcnt = m.payload.empty() ? 1 : 2;
  size_t total = sizeof(h) + m.payload.size();
  if (sealer_ != nullptr) {
    if (absl::Status s = sealer_->Seal(h, m.payload, &seal_buf_); !s.ok()) {
      Close(s);
      return s;
    }
    iov[0] = {seal_buf_.data(), seal_buf_.size()};
    iovcnt = 1;
    total = seal_buf_.size();
  }
  size_t done = 0;
  iovec* v = iov;
  while (done < total) {
    // sendmsg is writev with flags: MSG_NOSIGNAL, so a peer that went away is an error, not a SIGPIPE.
    msghdr mh{};
    mh.msg_iov = v;
    mh.msg_iovlen = static_cast<size_t>(iovcnt);
    ssize_t n = ::sendmsg(sock_.get(), &mh, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        absl::Status s = absl::DeadlineExceededError(
            absl::StrFormat("send to node %u blocked past the timeout (peer not reading)", peer_));
        Close(s);
        return s;
      }
      // The peer closed or reset the connection. Leave the socket to the receiver: it still reads what the peer
      // sent before going (a LEAVE makes the disconnect benign) and then reports the close.
      return ErrnoStatus(absl::StrFormat("send to node %u", peer_));
    }
    done += static_cast<size_t>(n);
    // Advance over what went out (partial writes happen when the socket buffer fills).
    size_t left = static_cast<size_t>(n);
    while (iovcnt > 0 && left >= v->iov_len) {
      left -= v->iov_len;
      ++v;
      --iovcnt;
    }
    if (iovcnt > 0) {
      v->iov_base = static_cast<uint8_t*>(v->iov_base) + left;
      v->iov_len -= left;
    }
  }
  last_tx_ns_ = NowNs();
  stats_->messages_sent.fetch_add(1, std::memory_order_relaxed);
  stats_->bytes_sent.fetch_add(total, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status PeerChannel::Enqueue(Message m) {
  if (closed_) return absl::UnavailableError(absl::StrFormat("connection to node %u is closed", peer_));
  if (emulate_) return Send(m, Lane::kFault);  // the emulated wire keeps the fault lane in order itself
  absl::MutexLock l(&queue_mu_);
  ordered_q_.push_back(std::move(m));
  return absl::OkStatus();
}

absl::Status PeerChannel::Flush() {
  if (emulate_) return absl::OkStatus();
  absl::MutexLock w(&write_mu_);
  for (;;) {
    Message m;
    {
      absl::MutexLock l(&queue_mu_);
      if (ordered_q_.empty()) return absl::OkStatus();
      m = std::move(ordered_q_.front());
      ordered_q_.pop_front();
    }
    absl::Status s = WriteLocked(m);
    if (!s.ok()) return s;
  }
}

absl::Status PeerChannel::Send(const Message& m, Lane lane) {
  if (closed_) return absl::UnavailableError(absl::StrFormat("connection to node %u is closed", peer_));
  if (lane == Lane::kBulk && m.payload.size() > kMaxBulkPayload) {
    return absl::InvalidArgumentError(absl::StrFormat("bulk payload of %u bytes exceeds %u", m.payload.size(),
                                                      kMaxBulkPayload));
  }
  if (lane == Lane::kFault && !emulate_) return WriteMessage(m);
  {
    absl::MutexLock l(&queue_mu_);
    (lane == Lane::kFault ? fault_q_ : bulk_q_).push_back(Queued{m, absl::InfinitePast()});
  }
  unsent_.fetch_add(1, std::memory_order_acq_rel);
  if (lane == Lane::kBulk) stats_->bulk_messages_sent.fetch_add(1, std::memory_order_relaxed);
  Kick();
  return absl::OkStatus();
}

// Without emulation only bulk messages come here. With emulation the emulated wire takes one message at a time,
// fault lane first, when it is free; a message is written to the socket at its emulated arrival time.
void PeerChannel::SendLoop() {
  std::deque<Queued> on_wire;  // emulation: release times are non-decreasing
  while (!stop_ && !closed_) {
    const absl::Time now = absl::Now();
    absl::Time wake_at = absl::InfiniteFuture();
    bool bulk_ready = false;
    std::optional<Message> to_send;
    if (!on_wire.empty() && on_wire.front().release <= now) {
      to_send = std::move(on_wire.front().msg);
      on_wire.pop_front();
    } else {
      absl::MutexLock l(&queue_mu_);
      if (emulate_) {
        const bool waiting = !fault_q_.empty() || !bulk_q_.empty();
        if (waiting && shaper_.wire_free() <= now) {
          auto& q = !fault_q_.empty() ? fault_q_ : bulk_q_;
          Queued x = std::move(q.front());
          q.pop_front();
          x.release = shaper_.ReleaseTime(now, sizeof(WireHeader) + x.msg.payload.size());
          on_wire.push_back(std::move(x));
          continue;
        }
        if (waiting) wake_at = shaper_.wire_free();
        if (!on_wire.empty()) wake_at = std::min(wake_at, on_wire.front().release);
      } else {
        bulk_ready = !bulk_q_.empty();
      }
    }
    if (to_send) {
      const bool ok = WriteMessage(*to_send).ok();
      unsent_.fetch_sub(1, std::memory_order_acq_rel);
      if (!ok) return;
      continue;
    }
    // Wait for a kick, the next emulated event, or (a bulk message is ready) room under the low-water mark.
    pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {sock_.get(), POLLOUT, 0}};
    timespec ts{};
    timespec* timeout = nullptr;  // microsecond precision: emulated latencies can be well under 1 ms
    if (wake_at != absl::InfiniteFuture()) {
      ts = absl::ToTimespec(std::max(wake_at - absl::Now(), absl::ZeroDuration()));
      timeout = &ts;
    }
    int n = ::ppoll(fds, bulk_ready ? 2 : 1, timeout, nullptr);
    if (n < 0 && errno != EINTR) return;
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] ssize_t r = ::read(wake_.get(), &v, sizeof(v));
    }
    if (bulk_ready && (fds[1].revents & POLLOUT)) {
      {
        absl::MutexLock l(&queue_mu_);
        to_send = std::move(bulk_q_.front().msg);
        bulk_q_.pop_front();
      }
      const bool ok = WriteMessage(*to_send).ok();
      unsent_.fetch_sub(1, std::memory_order_acq_rel);
      if (!ok) return;
    }
  }
}

void PeerChannel::ReceiveLoop() {
  absl::Status why;
  std::vector<uint8_t> scratch;  // sealed frames: the ciphertext
  MessageSource in(sock_.get(), /*buffered=*/true);
  for (;;) {
    WireHeader h;
    Message m;
    why = ReadMessage(in, peer_, opener_.get(), &scratch, &h, &m.payload);
    if (!why.ok()) {
      if (why.code() == absl::StatusCode::kDataLoss) {
        stats_->frames_rejected.fetch_add(1, std::memory_order_relaxed);
        LOG_ERROR("dsm node %u: dropping the connection to node %u: %s", self_, peer_, why.ToString());
      }
      break;
    }
    m.type = static_cast<MsgType>(h.type);
    m.src = peer_;
    m.dst = self_;
    m.page = h.page;
    m.arg = h.arg;
    m.flags = h.flags;
    m.seq = h.seq;
    last_rx_ns_ = NowNs();
    stats_->messages_received.fetch_add(1, std::memory_order_relaxed);
    stats_->bytes_received.fetch_add(sizeof(h) + h.payload_len, std::memory_order_relaxed);
    if (m.type == MsgType::kHeartbeat) continue;
    cb_.on_message(peer_, std::move(m));
  }
  // Report the first reason: a deliberate Close() wins over the EOF it causes.
  Close(why);
  absl::Status reason;
  {
    absl::MutexLock l(&close_mu_);
    reason = close_reason_;
  }
  cb_.on_closed(peer_, reason);
}

}  // namespace coalesce::dsm
