#include "hypervisor/base/child_process.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace coalesce {
namespace {

constexpr int kPassedFd = 3;

// fork(), or clone3() when the child needs a new PID namespace or a cgroup from its start. Like fork() in a
// multi-threaded parent, the child runs only async-signal-safe code until exec (ExecChild).
pid_t ForkChild(const ChildProcess::Options& options) {
  if (!options.new_pid_namespace && options.cgroup_fd < 0) return ::fork();
  clone_args args{};
  args.flags = (options.new_pid_namespace ? CLONE_NEWPID : 0) | (options.cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
  args.exit_signal = SIGCHLD;
  if (options.cgroup_fd >= 0) args.cgroup = static_cast<uint64_t>(options.cgroup_fd);
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof(args)));
}

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int PidfdSendSignal(int pidfd, int signal) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

// Reports errno to the parent through the exec-error pipe and ends the child.
[[noreturn]] void FailChild(int error_fd) {
  const int err = errno;
  (void)!::write(error_fd, &err, sizeof(err));
  ::_exit(127);
}

// Runs in the forked child of a multi-threaded parent: only async-signal-safe calls until exec, no allocation.
[[noreturn]] void ExecChild(char* const* argv, int pass_fd, int input_fd, int output_fd, int error_fd,
                            bool die_with_parent, pid_t parent) {
  if (die_with_parent) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) FailChild(error_fd);
    // The parent died before prctl took effect. (Pid 1 of a new PID namespace sees its parent as pid 0, always:
    // there the death signal alone guards it.)
    if (parent != 0 && ::getppid() != parent) ::_exit(127);
  }
  // The parent may block signals (the agent waits for SIGTERM with sigwait) or ignore SIGPIPE: the runtime starts
  // with the defaults.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  if (input_fd >= 0 && ::dup2(input_fd, STDIN_FILENO) < 0) FailChild(error_fd);
  if (output_fd >= 0) {
    if (::dup2(output_fd, STDOUT_FILENO) < 0 || ::dup2(output_fd, STDERR_FILENO) < 0) FailChild(error_fd);
  }
  // Keep the error pipe clear of fd 3 before the passed fd lands there.
  if (error_fd == kPassedFd) {
    error_fd = ::fcntl(error_fd, F_DUPFD_CLOEXEC, kPassedFd + 1);
    if (error_fd < 0) ::_exit(127);
  }
  if (pass_fd >= 0) {
    if (pass_fd == kPassedFd) {
      if (::fcntl(kPassedFd, F_SETFD, 0) != 0) FailChild(error_fd);
    } else if (::dup2(pass_fd, kPassedFd) != kPassedFd) {
      FailChild(error_fd);
    }
  }
  // Every other inherited fd (gRPC sockets, other VMs' pipes) closes at exec.
  const unsigned first_closed = pass_fd >= 0 ? kPassedFd + 1 : kPassedFd;
  if (::syscall(SYS_close_range, first_closed, ~0U, CLOSE_RANGE_CLOEXEC) != 0) FailChild(error_fd);
  ::execv(argv[0], argv);
  FailChild(error_fd);
}

}  // namespace

ChildProcess::~ChildProcess() {
  if (valid() && !reaped_) {
    (void)Signal(SIGKILL);
    (void)Wait();
  }
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), pidfd_(std::move(other.pidfd_)), reaped_(std::exchange(other.reaped_, false)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (valid() && !reaped_) {
      (void)Signal(SIGKILL);
      (void)Wait();
    }
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    reaped_ = std::exchange(other.reaped_, false);
  }
  return *this;
}

absl::StatusOr<ChildProcess> ChildProcess::Spawn(const Options& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("spawn: empty argv");
  // Everything the child needs is built before fork: the child must not allocate.
  std::vector<char*> argv;
  argv.reserve(options.argv.size() + 1);
  for (const std::string& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) return ErrnoStatus("spawn: pipe2");
  UniqueFd error_read(error_pipe[0]);
  UniqueFd error_write(error_pipe[1]);

  const pid_t parent = ::getpid();
  const pid_t pid = ForkChild(options);
  if (pid < 0) {
    return ErrnoStatus(absl::StrCat("spawn: ", options.new_pid_namespace || options.cgroup_fd >= 0
                                                   ? "clone3 (new PID namespace / into a cgroup)"
                                                   : "fork"));
  }
  if (pid == 0) {
    ExecChild(argv.data(), options.pass_fd, options.input_fd, options.output_fd, error_write.get(),
              options.die_with_spawning_thread, options.new_pid_namespace ? 0 : parent);
  }
  error_write.Reset();

  ChildProcess child;
  child.pid_ = pid;
  // We are the parent and have not reaped it, so the pid cannot have been recycled yet.
  child.pidfd_.Reset(PidfdOpen(pid));
  if (!child.pidfd_.valid()) return ErrnoStatus("spawn: pidfd_open");  // ~ChildProcess kills and reaps it

  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(error_read.get(), &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    (void)child.Wait();
    return ErrnoStatus(absl::StrCat("spawn: exec ", options.argv[0]), child_errno);
  }
  return child;
}

absl::Status ChildProcess::Signal(int signal) {
  if (!valid()) return absl::FailedPreconditionError("signal: no child process");
  if (!pidfd_.valid()) {
    // Only when pidfd_open failed in Spawn: the child is not reaped yet, so its pid cannot have been recycled.
    if (reaped_) return absl::OkStatus();
    if (::kill(pid_, signal) != 0 && errno != ESRCH) return ErrnoStatus(absl::StrCat("kill pid ", pid_));
    return absl::OkStatus();
  }
  if (PidfdSendSignal(pidfd_.get(), signal) != 0 && errno != ESRCH) {
    return ErrnoStatus(absl::StrCat("pidfd_send_signal to pid ", pid_));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ChildProcess::Wait() {
  if (!valid()) return absl::FailedPreconditionError("wait: no child process");
  if (reaped_) return absl::FailedPreconditionError("wait: child already reaped");
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ErrnoStatus(absl::StrCat("waitpid ", pid_));
  reaped_ = true;
  return status;
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return absl::StrCat("exited with status ", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    const char* name = ::strsignal(sig);
    // SIGSYS from a seccomp filter: the child made a system call its sandbox does not allow.
    return absl::StrCat("killed by signal ", sig, " (", name != nullptr ? name : "?",
                        sig == SIGSYS ? ": a system call outside its seccomp filter" : "", ")");
  }
  return absl::StrCat("ended with wait status ", wait_status);
}

int WaitStatusToExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return -WTERMSIG(wait_status);
  return -1;
}

}  // namespace coalesce
