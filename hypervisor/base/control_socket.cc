#include "hypervisor/base/control_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/thread_name.h"

namespace coalesce {
namespace {

constexpr size_t kMaxCommand = 4096;
constexpr int kServeTimeoutMs = 5000;
constexpr int kPollMs = 200;

absl::StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("control socket path too long: ", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Waits for `events` on fd until `deadline`; false on timeout or error.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// Writes all of `data` unless the deadline passes or the peer goes; false then.
bool SendAll(int fd, std::string_view data, std::chrono::steady_clock::time_point deadline) {
  size_t sent = 0;
  while (sent < data.size()) {
    if (!WaitFor(fd, POLLOUT, deadline)) return false;
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

absl::Status ValidateVmName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 && name[0] != '.';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                c == '-');
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("VM name '", std::string(name),
                                                 "': 1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with '.'"));
}

std::string ControlSocketDir() {
  if (const char* dir = std::getenv("COALESCE_RUN_DIR"); dir != nullptr && *dir != '\0') return dir;
  if (::geteuid() == 0) return "/run/coalesce";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg != '\0') {
    return absl::StrCat(xdg, "/coalesce");
  }
  return absl::StrCat("/tmp/coalesce-", ::geteuid());
}

std::string ControlSocketPath(std::string_view vm_name) {
  return absl::StrCat(ControlSocketDir(), "/", std::string(vm_name), ".sock");
}

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(const std::string& path, Handler handler) {
  const std::string dir = path.substr(0, path.rfind('/'));
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) {
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);  // 0700: only this user's VMs
  }
  if (ec) return absl::PermissionDeniedError(absl::StrCat("creating the control socket directory ", dir, ": ", ec.message()));
  absl::StatusOr<sockaddr_un> addr = Address(path);
  if (!addr.ok()) return addr.status();
  // A socket already there: a live VM answers a connection (refuse), a stale one from a VM that died does not.
  if (absl::StatusOr<std::string> live = CallControl(path, "ping", absl::Seconds(1)); live.ok()) {
    return absl::AlreadyExistsError(absl::StrCat(path, " is in use: a VM or edge agent already listens there"));
  }
  ::unlink(path.c_str());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return ErrnoStatus("control socket", errno);
  const mode_t old_mask = ::umask(0177);  // the socket is created 0600
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  ::umask(old_mask);
  if (rc != 0) return ErrnoStatus(absl::StrCat("binding the control socket ", path), errno);
  if (::listen(fd.get(), 8) != 0) return ErrnoStatus(absl::StrCat("listening on ", path), errno);
  std::unique_ptr<ControlServer> server(new ControlServer(path, std::move(fd), std::move(handler)));
  server->thread_ = StartNamedThread("control", [raw = server.get()] { raw->Loop(); });
  return server;
}

ControlServer::ControlServer(std::string path, UniqueFd listener, Handler handler)
    : path_(std::move(path)), listener_(std::move(listener)), handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

void ControlServer::Loop() {
  while (!stopping_.load()) {
    pollfd p{listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, kPollMs) <= 0) continue;
    UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (conn.get() < 0) continue;
    Serve(conn.get());  // one at a time: commands are short, and a slow client is cut off after 5 s
  }
}

void ControlServer::Serve(int fd) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kServeTimeoutMs);
  std::string line;
  char buf[512];
  while (line.find('\n') == std::string::npos && line.size() < kMaxCommand) {
    if (!WaitFor(fd, POLLIN, deadline)) {
      ++dropped_;
      LOG_WARN("control %s: a client sent no whole command within %d ms (%zu bytes): dropped, %llu so far", path_,
               kServeTimeoutMs, line.size(), static_cast<unsigned long long>(dropped_));
      return;
    }
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    line.append(buf, static_cast<size_t>(n));
  }
  if (const size_t nl = line.find('\n'); nl != std::string::npos) line.resize(nl);
  std::string reply = handler_(line);
  if (reply.empty() || reply.back() != '\n') reply += '\n';
  // The reply gets its own 5 s: a command may take a while (a vCPU move waits for the nodes).
  // A client that went away or stalls misses its answer, nothing more.
  if (!SendAll(fd, reply, std::chrono::steady_clock::now() + std::chrono::milliseconds(kServeTimeoutMs))) {
    ++dropped_;
    LOG_WARN("control %s: the answer to '%s' could not be sent (the client went away?), %llu dropped so far", path_,
             line.substr(0, 64), static_cast<unsigned long long>(dropped_));
  }
}

absl::StatusOr<std::string> CallControl(const std::string& path, std::string_view command, absl::Duration timeout) {
  absl::StatusOr<sockaddr_un> addr = Address(path);
  if (!addr.ok()) return addr.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return ErrnoStatus("control socket", errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    const int e = errno;
    if (e == ENOENT || e == ECONNREFUSED) {
      return absl::NotFoundError(absl::StrCat("nothing listens on ", path, " (no VM or edge agent runs there)"));
    }
    return ErrnoStatus(absl::StrCat("connecting to ", path), e);
  }
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(timeout);
  const std::string request = absl::StrCat(std::string(command), "\n");
  if (!SendAll(fd.get(), request, deadline)) {
    return absl::UnavailableError(absl::StrCat("the VM at ", path, " did not take the command"));
  }
  std::string reply;
  char buf[4096];
  for (;;) {
    if (!WaitFor(fd.get(), POLLIN, deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("the VM at ", path, " did not answer within ", absl::FormatDuration(timeout)));
    }
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("reading from ", path), errno);
    if (n == 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  // Every answer ends with a newline (ControlServer::Serve): without one the connection closed mid-answer or
  // before it.
  if (reply.empty() || reply.back() != '\n') {
    return absl::UnavailableError(absl::StrCat("the VM at ", path, " closed the connection without a whole answer (",
                                               reply.size(), " bytes)"));
  }
  return reply;
}

}  // namespace coalesce
