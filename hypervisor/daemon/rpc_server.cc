#include "hypervisor/daemon/rpc_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"

namespace coalesce::daemon {
namespace {

absl::StatusOr<sockaddr_un> AddressOf(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path '", path, "' is empty or longer than ", sizeof addr.sun_path - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

bool Connection::Send(const MessageHeader& header, std::span<const uint8_t> payload) {
  std::vector<uint8_t> bytes = EncodeMessage(header, payload);
  absl::MutexLock lock(&write_mu_);
  size_t done = 0;
  while (done < bytes.size()) {
    if (closed_.load()) return false;
    ssize_t n = ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_.get(), POLLOUT, 0};
      // A client that stops reading for this long is gone as far as we are concerned.
      if (::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kMessageTimeout).count())) <= 0) return false;
      continue;
    }
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

void Connection::Close() {
  if (closed_.exchange(true)) return;
  ::shutdown(fd_.get(), SHUT_RDWR);
}

void Connection::OnClose(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  on_close_.push_back(std::move(fn));
}

void Connection::RunCloseHandlers() {
  std::vector<std::function<void()>> handlers;
  {
    absl::MutexLock lock(&mu_);
    handlers.swap(on_close_);
  }
  for (auto& h : handlers) h();
}

RpcServer::RpcServer(std::string path, UniqueFd listener, Dispatcher* dispatcher)
    : path_(std::move(path)), listener_(std::move(listener)), dispatcher_(dispatcher) {
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

absl::StatusOr<std::unique_ptr<RpcServer>> RpcServer::Start(const std::string& socket_path, Dispatcher* dispatcher) {
  absl::StatusOr<sockaddr_un> addr = AddressOf(socket_path);
  if (!addr.ok()) return addr.status();
  {
    // A socket file that still answers belongs to a running daemon: never steal it.
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() &&
        ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un)) == 0) {
      return absl::AlreadyExistsError(absl::StrCat("another daemon is serving ", socket_path));
    }
  }
  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::AlreadyExistsError(absl::StrCat(socket_path, " exists and is not a socket: not removing it"));
    }
    ::unlink(socket_path.c_str());  // a stale socket of a daemon that is gone
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus("socket");
  const mode_t old_mask = ::umask(0177);  // the socket is born 0600: no window where others may connect
  const int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un));
  const int bind_errno = errno;
  ::umask(old_mask);
  if (bound != 0) return ErrnoStatus("bind " + socket_path, bind_errno);
  if (::listen(fd.get(), 64) != 0) return ErrnoStatus("listen " + socket_path);
  return std::unique_ptr<RpcServer>(new RpcServer(socket_path, std::move(fd), dispatcher));
}

RpcServer::~RpcServer() {
  stop_.store(true);
  if (acceptor_.joinable()) acceptor_.join();
  std::list<ClientThread> threads;
  {
    absl::MutexLock lock(&mu_);
    for (auto& w : connections_) {
      if (auto c = w.lock()) c->Close();
    }
    threads.swap(client_threads_);
  }
  for (auto& t : threads) t.thread.join();
  ::unlink(path_.c_str());
}

void RpcServer::AcceptLoop() {
  while (!stop_.load()) {
    pollfd p{listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    // Non-blocking: a client that stops reading must not hold a writer (and write_mu_) forever; Send and
    // ReadExact wait in poll with deadlines instead.
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd.valid()) continue;
    counters_.clients.fetch_add(1);
    auto conn = std::make_shared<Connection>(std::move(fd));
    absl::MutexLock lock(&mu_);
    if (client_threads_.size() >= kMaxClients) {
      // Bounded: every client may hold a message buffer and a thread. Refused ones are counted and logged.
      counters_.refused.fetch_add(1);
      LOG_WARN("daemon: %zu clients connected: refusing another", client_threads_.size());
      continue;
    }
    // Join the threads of clients that have gone, so a long-lived daemon does not accumulate them.
    for (auto it = client_threads_.begin(); it != client_threads_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = client_threads_.erase(it);
      } else {
        ++it;
      }
    }
    std::erase_if(connections_, [](const std::weak_ptr<Connection>& w) { return w.expired(); });
    connections_.push_back(conn);
    auto done = std::make_shared<std::atomic<bool>>(false);
    client_threads_.push_back({std::thread([this, conn, done] {
                                 Serve(conn);
                                 done->store(true);
                               }),
                               done});
  }
}

absl::Status RpcServer::ReadExact(Connection& conn, std::span<uint8_t> out, bool first) {
  size_t done = 0;
  auto deadline = std::chrono::steady_clock::now() + kMessageTimeout;
  while (done < out.size()) {
    if (stop_.load() || conn.closed()) return absl::CancelledError("connection closed");
    pollfd p{conn.fd(), POLLIN, 0};
    const int r = ::poll(&p, 1, 200);
    if (r < 0 && errno != EINTR) return ErrnoStatus("poll");
    if (r <= 0) {
      if (!(first && done == 0) && std::chrono::steady_clock::now() > deadline) {
        counters_.timeouts.fetch_add(1);
        return absl::DeadlineExceededError(absl::StrCat("a message stopped arriving after ", done, " of ",
                                                        out.size(), " bytes"));
      }
      continue;
    }
    ssize_t n = ::recv(conn.fd(), out.data() + done, out.size() - done, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n == 0) return absl::CancelledError("client disconnected");
    if (n < 0) return ErrnoStatus("recv");
    if (done == 0) deadline = std::chrono::steady_clock::now() + kMessageTimeout;
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

void RpcServer::Serve(std::shared_ptr<Connection> conn) {
  while (true) {
    std::array<uint8_t, kLengthBytes> len_bytes{};
    absl::Status st = ReadExact(*conn, len_bytes, /*first=*/true);
    if (!st.ok()) {
      if (!absl::IsCancelled(st)) LOG_WARN("daemon: client %d: %s", conn->fd(), std::string(st.message()));
      break;
    }
    absl::StatusOr<uint32_t> length = DecodeLength(len_bytes);
    if (!length.ok()) {
      // The framing is lost: nothing after this can be trusted to start a message.
      counters_.malformed.fetch_add(1);
      LOG_WARN("daemon: client %d: %s; disconnecting it", conn->fd(), std::string(length.status().message()));
      break;
    }
    // Grown as bytes arrive: a client that announces 32 MiB and sends nothing pins one chunk, not 32 MiB.
    std::vector<uint8_t> body;
    const size_t want = *length - kLengthBytes;
    while (st.ok() && body.size() < want) {
      const size_t at = body.size();
      body.resize(std::min(want, at + kReadChunk));
      st = ReadExact(*conn, std::span<uint8_t>(body).subspan(at), /*first=*/false);
    }
    if (!st.ok()) {
      LOG_WARN("daemon: client %d: %s", conn->fd(), std::string(st.message()));
      break;
    }
    absl::StatusOr<Message> message = DecodeMessage(body);
    if (!message.ok()) {
      counters_.malformed.fetch_add(1);
      LOG_WARN("daemon: client %d: %s; disconnecting it", conn->fd(), std::string(message.status().message()));
      break;
    }
    counters_.messages.fetch_add(1);
    dispatcher_->Handle(conn, *message);
  }
  conn->Close();
  conn->RunCloseHandlers();
}

}  // namespace coalesce::daemon
