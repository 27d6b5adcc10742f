#include "devmodel/vhost_user/vhost_user_connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce::vhost_user {

absl::StatusOr<Connection> Connection::Connect(const std::string& path, absl::Duration timeout,
                                               const std::function<absl::Status()>& still_starting) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrFormat("vhost-user socket path too long: %s", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return ErrnoStatus("vhost-user: socket");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
      return Connection(std::move(fd));
    }
    const int err = errno;
    if (err != ENOENT && err != ECONNREFUSED) return ErrnoStatus(absl::StrCat("vhost-user: connect ", path), err);
    RETURN_IF_ERROR(still_starting());
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrFormat("vhost-user: %s did not accept a connection within %s", path, absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

absl::Status Connection::Send(std::span<const uint8_t> message, std::span<const int> fds) {
  iovec iov{const_cast<uint8_t*>(message.data()), message.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxMemRegions)] = {};
  if (!fds.empty()) {
    if (fds.size() > kMaxMemRegions) return absl::InvalidArgumentError("vhost-user: too many fds in one message");
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  // The socket is blocking: the kernel buffer takes a whole vhost-user message (a few hundred bytes).
  ssize_t n;
  do {
    n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoStatus("vhost-user: send to the back end");
  if (static_cast<size_t>(n) != message.size()) {
    return absl::UnavailableError(absl::StrFormat("vhost-user: short send (%d of %u bytes)", n, message.size()));
  }
  return absl::OkStatus();
}

absl::Status Connection::ReadExactly(uint8_t* out, size_t n, absl::Time deadline, Request request) {
  size_t got = 0;
  while (got < n) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrFormat("vhost-user back end did not answer %s within %s",
                                                         RequestName(request), absl::FormatDuration(reply_timeout_)));
    }
    pollfd p{fd_.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus("vhost-user: poll");
    if (r == 0) continue;
    const ssize_t k = ::recv(fd_.get(), out + got, n - got, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return ErrnoStatus(absl::StrFormat("vhost-user: reading the reply to %s", RequestName(request)));
    if (k == 0) {
      return absl::UnavailableError(
          absl::StrFormat("vhost-user back end closed the connection before answering %s", RequestName(request)));
    }
    got += static_cast<size_t>(k);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> Connection::ReadReply(Request request) {
  const absl::Time deadline = absl::Now() + reply_timeout_;
  uint8_t header[kHeaderSize];
  RETURN_IF_ERROR(ReadExactly(header, sizeof(header), deadline, request));
  ASSIGN_OR_RETURN(ReplyHeader h, DecodeReplyHeader(header, request));
  std::vector<uint8_t> payload(h.size);
  RETURN_IF_ERROR(ReadExactly(payload.data(), payload.size(), deadline, request));
  return payload;
}

absl::StatusOr<uint64_t> Connection::CallU64(Request request, std::span<const uint8_t> message) {
  RETURN_IF_ERROR(Send(message));
  ASSIGN_OR_RETURN(std::vector<uint8_t> payload, ReadReply(request));
  return DecodeU64(request, payload);
}

absl::Status Connection::SendAcked(Request request, std::span<const uint8_t> message, std::span<const int> fds) {
  RETURN_IF_ERROR(Send(message, fds));
  ASSIGN_OR_RETURN(std::vector<uint8_t> payload, ReadReply(request));
  ASSIGN_OR_RETURN(uint64_t ack, DecodeU64(request, payload));
  if (ack != 0) {
    return absl::InternalError(absl::StrFormat("vhost-user back end refused %s (status %u)", RequestName(request), ack));
  }
  return absl::OkStatus();
}

}  // namespace coalesce::vhost_user
