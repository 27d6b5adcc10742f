// A child process started with fork + exec and owned through a pidfd, so that signals never reach a recycled pid.
// Used by the edge agent (one remote vCPU runtime per VM) and by the disk device model (qemu-storage-daemon).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {

class ChildProcess final {
 public:
  struct Options {
    std::vector<std::string> argv;  // argv[0] is the program executed (a path; no PATH search).
    // Become fds 3, 4, ... in the child, in this order (at most kMaxPassedFds). Every other fd above 2 is closed.
    std::vector<int> pass_fds;
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
    // A new user namespace, also set at creation, in which the child is root (with every capability over that
    // namespace and the namespaces it then owns: its PID, mount and IPC namespaces) while on the host it is only
    // `uid`/`gid`, mapped alone: what it can open or signal outside is what that unprivileged id can. The parent
    // writes the maps before the child execs, and argv[0] is opened by the parent and executed through that fd
    // (execveat), so the program's directories need not be searchable by `uid`: it must be an ELF binary readable
    // and executable by `uid` (no #! script). Needs root outside (to map an id other than its own) and a
    // process that is not chrooted.
    struct IdMapping {
      uid_t uid;
      gid_t gid;
    };
    std::optional<IdMapping> user_namespace;
  };
  static constexpr size_t kMaxPassedFds = 8;

  ChildProcess() = default;
  // Kills (SIGKILL) and reaps a child that was not waited for: no zombies, no orphans.
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Returns once exec has succeeded in the child; an exec failure is reported here with its errno.
  static absl::StatusOr<ChildProcess> Spawn(const Options& options);

  // Whether Options::user_namespace can work here: creates (and reaps) a child in a new user namespace. An error
  // names why not (not root, user namespaces disabled, a chrooted caller).
  static absl::Status CheckUserNamespaces();

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] bool valid() const { return pid_ > 0; }
  // Readable once the child has exited (poll it); -1 where pidfd_open failed.
  [[nodiscard]] int pidfd() const { return pidfd_.get(); }

  // Sends `signal` through the pidfd. A child that already exited is not an error. Safe to call while another
  // thread is blocked in Wait(). A non-zero `value` goes with it as a queued signal's value (SI_QUEUE, as
  // sigqueue(3)): the child reads it from its siginfo (SignalStopper passes it on).
  absl::Status Signal(int signal, int value = 0);

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
