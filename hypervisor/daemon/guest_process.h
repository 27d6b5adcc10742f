// One running guest: a `coalesce run` child in a session of its own, with its console on files in the state
// directory so that it outlives a daemon restart (COM1 output appended to NAME.console, input read from the
// FIFO NAME.console.in, diagnostics to NAME.log). A watcher thread waits for the process to end (pidfd +
// poll, so a guest left by an earlier daemon is watched the same way as a child) and reports how it ended.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce::daemon {

struct GuestPaths {
  std::string console;     // COM1 output
  std::string console_in;  // FIFO: COM1 input
  std::string log;         // the child's stderr
};

struct GuestEnd {
  bool known = false;   // false for an adopted process: its exit status went to its old parent
  int exit_status = 0;  // `coalesce run` exit status (see exit_status.h), when it exited
  int signal = 0;       // the signal that killed it, if one did
};

class GuestProcess final {
 public:
  // Starts `binary args...`; `on_end` runs once on the watcher thread when the process has ended.
  static absl::StatusOr<std::unique_ptr<GuestProcess>> Launch(const std::string& binary,
                                                              const std::vector<std::string>& args,
                                                              const GuestPaths& paths,
                                                              std::function<void(GuestEnd)> on_end);
  // Watches a process an earlier daemon started. Fails when `pid` is gone or is no longer that process
  // (its start time differs).
  static absl::StatusOr<std::unique_ptr<GuestProcess>> Adopt(pid_t pid, uint64_t start_time,
                                                             std::function<void(GuestEnd)> on_end);
  // Stops watching (the process itself keeps running: guests outlive the daemon).
  ~GuestProcess();
  GuestProcess(const GuestProcess&) = delete;
  GuestProcess& operator=(const GuestProcess&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] uint64_t start_time() const { return start_time_; }
  [[nodiscard]] bool ended() const { return ended_.load(); }
  // Sends a signal to the guest process (SIGTERM: orderly stop; SIGKILL; SIGPWR: power button). Fails once it
  // has ended. (Pausing goes through the guest's control socket: a signal would stop the home only.)
  absl::Status Signal(int sig);
  // Sends SIGTERM, then SIGKILL if it has not ended within `grace_ms`, and waits up to 30 s more for it to
  // end (a process stuck in the kernel may outlast SIGKILL): DeadlineExceeded if it has not.
  absl::Status Terminate(int grace_ms);

  // The process's start time in clock ticks since boot (/proc/PID/stat field 22): with the pid it names one
  // process for good, so a recycled pid is never mistaken for a guest.
  static absl::StatusOr<uint64_t> StartTimeOf(pid_t pid);

 private:
  GuestProcess(pid_t pid, uint64_t start_time, UniqueFd pidfd, bool child, std::function<void(GuestEnd)> on_end);
  void Watch();

  pid_t pid_;
  uint64_t start_time_;
  UniqueFd pidfd_;
  bool child_;
  std::function<void(GuestEnd)> on_end_;
  std::atomic<bool> ended_{false};
  std::atomic<bool> stop_watching_{false};
  std::thread watcher_;
};

// Per-vCPU figures read from /proc for `virsh vcpuinfo` and `dominfo`: threads named "vcpuN".
struct VcpuThread {
  uint32_t vcpu = 0;
  uint64_t cpu_time_ns = 0;
  int host_cpu = -1;
  char state = '?';  // R, S, T, ...
};
std::vector<VcpuThread> ReadVcpuThreads(pid_t pid);
// Whole-process CPU time.
uint64_t ProcessCpuTimeNs(pid_t pid);

}  // namespace coalesce::daemon
