// The running VM's control socket: `coalesce run --name NAME` listens on a UNIX socket named after the VM, and
// `coalesce ctl --vm NAME COMMAND` sends one command line and prints the one reply (docs/COALESCENCE.md,
// "Controlling a running VM"). Where sockets live, the name rules, the server and the client call.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {

// 1..64 characters from [A-Za-z0-9._-], not starting with '.': InvalidArgument naming the name otherwise.
absl::Status ValidateVmName(std::string_view name);

// The directory of control sockets: $COALESCE_RUN_DIR if set, else /run/coalesce as root, else
// $XDG_RUNTIME_DIR/coalesce, else /tmp/coalesce-UID.
std::string ControlSocketDir();
std::string ControlSocketPath(std::string_view vm_name);

// Serves one command per connection on a thread of its own: reads a line (at most 4 KiB, within 5 s), answers
// with `handler(line)` and closes. The socket is mode 0600 in a 0700 directory; a stale socket left by a VM
// that died is replaced, a live one is AlreadyExists ("a VM named ... is already running").
class ControlServer final {
 public:
  using Handler = std::function<std::string(std::string_view command)>;
  static absl::StatusOr<std::unique_ptr<ControlServer>> Start(const std::string& path, Handler handler);
  ~ControlServer();  // stops the thread and removes the socket
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  ControlServer(std::string path, UniqueFd listener, Handler handler);
  void Loop();
  void Serve(int fd);

  std::string path_;
  UniqueFd listener_;
  Handler handler_;
  std::atomic<bool> stopping_{false};
  uint64_t dropped_ = 0;  // clients cut off or not answered; only the serving thread touches it
  std::thread thread_;
};

// Sends `command` to the socket at `path` and returns the reply. NotFound if no VM listens there (naming the
// path), DeadlineExceeded after `timeout`, Unavailable when the server closed the connection without a whole
// (newline-ended) answer.
absl::StatusOr<std::string> CallControl(const std::string& path, std::string_view command, absl::Duration timeout);

}  // namespace coalesce
