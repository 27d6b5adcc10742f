// A child process started with fork + exec and owned through a pidfd, so that signals never reach a recycled pid.
// Used by the edge agent (one remote vCPU runtime per VM) and by the disk device model (qemu-storage-daemon).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {

class ChildProcess final {
 public:
  struct Options {
    std::vector<std::string> argv;  // argv[0] is the program executed (a path; no PATH search).
    int pass_fd = -1;               // If >= 0, becomes fd 3 in the child. Every other fd above 2 is closed.
    int input_fd = -1;              // If >= 0, becomes the child's stdin (e.g. a pipe holding a secret).
    int output_fd = -1;             // If >= 0, becomes the child's stdout and stderr (e.g. a log file).
    // The child gets SIGKILL when the thread that spawned it exits (PR_SET_PDEATHSIG is per thread): spawn from a
    // thread that lives as long as the child.
    bool die_with_spawning_thread = true;
    // Isolation, both set at creation by clone3 (nothing runs outside them): the child is pid 1 of a new PID
    // namespace (needs CAP_SYS_ADMIN; it then sees no other process), and/or starts inside the cgroup v2
    // directory open at `cgroup_fd` (CLONE_INTO_CGROUP: its limits apply from the first instruction).
    bool new_pid_namespace = false;
    int cgroup_fd = -1;
  };

  ChildProcess() = default;
  // Kills (SIGKILL) and reaps a child that was not waited for: no zombies, no orphans.
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Returns once exec has succeeded in the child; an exec failure is reported here with its errno.
  static absl::StatusOr<ChildProcess> Spawn(const Options& options);

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] bool valid() const { return pid_ > 0; }
  // Readable once the child has exited (poll it); -1 where pidfd_open failed.
  [[nodiscard]] int pidfd() const { return pidfd_.get(); }

  // Sends `signal` through the pidfd. A child that already exited is not an error. Safe to call while another
  // thread is blocked in Wait().
  absl::Status Signal(int signal);

  // Blocks until the child exits and reaps it; returns the wait status (as from waitpid). Call from one thread.
  absl::StatusOr<int> Wait();

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  bool reaped_ = false;
};

// "exited with status 3", "killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int wait_status);
// The exit status, or -signal for a child killed by a signal.
int WaitStatusToExitCode(int wait_status);

}  // namespace coalesce
