#include "hypervisor/daemon/console_stream.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "hypervisor/base/log.h"

namespace coalesce::daemon {
namespace {
// New output is sent when inotify says the console file changed, so `virsh start --console` waits for no timer
// before the first line. Without inotify (its instance limit reached) the file is checked this often instead:
// small next to a guest's line rate, invisible to a person typing.
constexpr auto kPollInterval = std::chrono::milliseconds(10);
// With inotify, how often a quiet pump still looks whether the guest ended or the stream was stopped.
constexpr int kQuietCheckMs = 50;
constexpr size_t kChunk = 64 * 1024;

// A watch on the console file's writes; invalid when inotify is not available.
UniqueFd WatchWrites(const std::string& path) {
  UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!fd.valid()) return fd;
  if (::inotify_add_watch(fd.get(), path.c_str(), IN_MODIFY | IN_CLOSE_WRITE) < 0) return UniqueFd();
  return fd;
}

// Waits for the next write to the console file (or kQuietCheckMs), then drains the watch's events.
void WaitForWrite(const UniqueFd& watch) {
  if (!watch.valid()) {
    std::this_thread::sleep_for(kPollInterval);
    return;
  }
  pollfd p{watch.get(), POLLIN, 0};
  if (::poll(&p, 1, kQuietCheckMs) <= 0) return;
  alignas(inotify_event) char events[4096];
  while (::read(watch.get(), events, sizeof(events)) > 0) {
  }
}
}  // namespace

ConsoleStream::ConsoleStream(std::shared_ptr<Connection> conn, MessageHeader open_call, DomainManager* domains,
                             std::string domain, ConsoleSource source)
    : conn_(conn), header_(open_call), domains_(domains), domain_(std::move(domain)), source_(std::move(source)) {
  header_.type = MessageType::kStream;
}

ConsoleStream::~ConsoleStream() { StopPump(); }

void ConsoleStream::Start() {
  std::lock_guard<std::mutex> lock(join_mu_);
  if (stop_.load() || pump_.joinable()) return;
  pump_ = std::thread([this] { Pump(); });
}

void ConsoleStream::StopPump() {
  stop_.store(true);
  std::lock_guard<std::mutex> lock(join_mu_);
  if (pump_.joinable() && pump_.get_id() != std::this_thread::get_id()) pump_.join();
}

bool ConsoleStream::Send(MessageStatus status, std::span<const uint8_t> payload) {
  auto c = conn_.lock();
  if (!c) return false;
  MessageHeader h = header_;
  h.status = status;
  return c->Send(h, payload);
}

void ConsoleStream::Write(std::span<const uint8_t> bytes) {
  if (!input_.valid()) {
    // Non-blocking: a guest that does not read its console must not stall this client's reader thread.
    input_ = UniqueFd(::open(source_.input_path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    if (!input_.valid()) {
      LOG_WARN("daemon: console of '%s': cannot open %s: %s", domain_, source_.input_path, strerror(errno));
      return;
    }
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(input_.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      LOG_WARN("daemon: console of '%s': %zu input bytes dropped (the guest is not reading)", domain_,
               bytes.size() - done);
      return;
    }
    done += static_cast<size_t>(n);
  }
}

void ConsoleStream::Close() {
  StopPump();
  if (!done_.exchange(true)) Send(MessageStatus::kContinue, {});  // end of file for the displaced client
}

void ConsoleStream::ClientEnded(MessageStatus status) {
  StopPump();
  // Finish (OK) and abort (ERROR) are both confirmed with an empty STREAM/OK: the client waits for it.
  (void)status;
  Send(MessageStatus::kOk, {});
  done_.store(true);
}

void ConsoleStream::Pump() {
  UniqueFd out(::open(source_.output_path.c_str(), O_RDONLY | O_CLOEXEC));
  // Watched before the first read, so a write between that read and the wait is not missed.
  const UniqueFd watch = WatchWrites(source_.output_path);
  uint64_t offset = source_.start_offset;
  std::vector<uint8_t> buf(kChunk);
  bool guest_gone = false;
  while (!stop_.load()) {
    ssize_t n = out.valid() ? ::pread(out.get(), buf.data(), buf.size(), static_cast<off_t>(offset)) : 0;
    if (n > 0) {
      // Output counts as read only once it reached the client: a console that went away loses nothing.
      if (!Send(MessageStatus::kContinue, std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)))) return;
      offset += static_cast<uint64_t>(n);
      domains_->ConsoleConsumed(domain_, source_.id, offset);
      continue;
    }
    if (guest_gone) {  // everything it wrote has been sent: end of file (an empty CONTINUE)
      Send(MessageStatus::kContinue, {});
      done_.store(true);
      return;
    }
    // Checked before the last read, so output written just before the guest ended is still sent.
    guest_gone = !domains_->IsRunning(domain_, source_.id);
    if (!guest_gone) WaitForWrite(watch);
  }
}

}  // namespace coalesce::daemon
