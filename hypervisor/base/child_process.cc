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
#include "absl/strings/str_join.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"

extern char** environ;

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace coalesce {
namespace {

constexpr int kFirstPassedFd = 3;

// Everything the child needs, prepared before fork: the child must not allocate.
struct ChildPlan {
  char* const* argv = nullptr;
  int pass_fds[ChildProcess::kMaxPassedFds] = {};
  int pass_count = 0;
  int input_fd = -1;
  int output_fd = -1;
  int error_fd = -1;       // write end of the exec-error pipe (O_CLOEXEC)
  int maps_ready_fd = -1;  // user namespace: read end of the pipe the parent writes once the id maps are set
  int maps_ready_write_fd = -1;
  int exec_fd = -1;  // user namespace: argv[0] opened O_PATH by the parent (execveat)
  bool die_with_parent = true;
  pid_t parent = 0;  // 0: not known in the child's PID namespace
};

uint64_t CloneFlags(const ChildProcess::Options& options) {
  return (options.new_pid_namespace ? CLONE_NEWPID : 0) | (options.cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0) |
         (options.user_namespace.has_value() ? CLONE_NEWUSER : 0);
}

// fork(), or clone3() when the child needs new namespaces or a cgroup from its start. Like fork() in a
// multi-threaded parent, the child runs only async-signal-safe code until exec (ExecChild).
pid_t ForkChild(const ChildProcess::Options& options) {
  const uint64_t flags = CloneFlags(options);
  if (flags == 0) return ::fork();
  clone_args args{};
  args.flags = flags;
  args.exit_signal = SIGCHLD;
  if (options.cgroup_fd >= 0) args.cgroup = static_cast<uint64_t>(options.cgroup_fd);
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof(args)));
}

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int PidfdSendSignal(int pidfd, int signal, int value) {
  if (value == 0) return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
  siginfo_t info{};
  info.si_signo = signal;
  info.si_code = SI_QUEUE;  // a user-sent signal with a value; the kernel refuses codes >= 0 from another process
  info.si_pid = ::getpid();
  info.si_uid = ::getuid();
  info.si_value.sival_int = value;
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, &info, 0));
}

// Reports errno to the parent through the exec-error pipe and ends the child.
[[noreturn]] void FailChild(int error_fd) {
  const int err = errno;
  (void)!::write(error_fd, &err, sizeof(err));
  ::_exit(127);
}

// Places the passed fds at 3, 4, ...: first each is copied above that range (so placing one cannot overwrite
// another, nor the error pipe), then moved down (dup2 clears close-on-exec on the copy).
void PlacePassedFds(ChildPlan& plan) {
  const int above = kFirstPassedFd + plan.pass_count;
  if (plan.error_fd < above) {
    plan.error_fd = ::fcntl(plan.error_fd, F_DUPFD_CLOEXEC, above);
    if (plan.error_fd < 0) ::_exit(127);
  }
  if (plan.exec_fd >= 0 && plan.exec_fd < above) {
    plan.exec_fd = ::fcntl(plan.exec_fd, F_DUPFD_CLOEXEC, above);
    if (plan.exec_fd < 0) FailChild(plan.error_fd);
  }
  int staged[ChildProcess::kMaxPassedFds];
  for (int i = 0; i < plan.pass_count; ++i) {
    staged[i] = ::fcntl(plan.pass_fds[i], F_DUPFD_CLOEXEC, above);
    if (staged[i] < 0) FailChild(plan.error_fd);
  }
  for (int i = 0; i < plan.pass_count; ++i) {
    if (::dup2(staged[i], kFirstPassedFd + i) != kFirstPassedFd + i) FailChild(plan.error_fd);
  }
}

// Runs in the forked child of a multi-threaded parent: only async-signal-safe calls until exec, no allocation.
[[noreturn]] void ExecChild(ChildPlan plan) {
  if (plan.maps_ready_fd >= 0) {
    // In a new user namespace, unmapped (every id reads as the overflow id) until the parent has written the
    // maps. Its own copy of the write end would keep the pipe open if the parent died first.
    ::close(plan.maps_ready_write_fd);
    char byte;
    ssize_t n;
    do {
      n = ::read(plan.maps_ready_fd, &byte, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(127);  // the parent gave up (and reports why)
    // The maps translate ids; they do not change the child's own, which are still the parent's (root outside,
    // unmapped here). Becoming root here makes it the mapped id outside; the supplementary groups (root's) go
    // first. Before the death signal below: a change of credentials clears it. Raw system calls: glibc's
    // wrappers apply a change to every thread of the process, and in a child cloned from a multi-threaded parent
    // its thread list still names the parent's threads (it would signal them and wait for their answer).
    if (::syscall(SYS_setgroups, 0, nullptr) != 0 || ::syscall(SYS_setresgid, 0, 0, 0) != 0 ||
        ::syscall(SYS_setresuid, 0, 0, 0) != 0) {
      FailChild(plan.error_fd);
    }
  }
  if (plan.die_with_parent) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) FailChild(plan.error_fd);
    // The parent died before prctl took effect. (Pid 1 of a new PID namespace sees its parent as pid 0, always:
    // there the death signal alone guards it.)
    if (plan.parent != 0 && ::getppid() != plan.parent) ::_exit(127);
  }
  // The parent may block signals (the agent waits for SIGTERM with sigwait) or ignore SIGPIPE: the runtime starts
  // with the defaults.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  if (plan.input_fd >= 0 && ::dup2(plan.input_fd, STDIN_FILENO) < 0) FailChild(plan.error_fd);
  if (plan.output_fd >= 0) {
    if (::dup2(plan.output_fd, STDOUT_FILENO) < 0 || ::dup2(plan.output_fd, STDERR_FILENO) < 0) {
      FailChild(plan.error_fd);
    }
  }
  PlacePassedFds(plan);
  // Every other inherited fd (gRPC sockets, other VMs' pipes) closes at exec.
  const unsigned first_closed = static_cast<unsigned>(kFirstPassedFd + plan.pass_count);
  if (::syscall(SYS_close_range, first_closed, ~0U, CLOSE_RANGE_CLOEXEC) != 0) FailChild(plan.error_fd);
  if (plan.exec_fd >= 0) {
    ::syscall(SYS_execveat, plan.exec_fd, "", plan.argv, environ, AT_EMPTY_PATH);
  } else {
    ::execv(plan.argv[0], plan.argv);
  }
  FailChild(plan.error_fd);
}

// Root in the child's new user namespace is `mapping` outside, and nothing else is mapped. setgroups stays
// allowed: the child needs it to drop the supplementary groups it inherits from its root parent.
absl::Status WriteIdMaps(pid_t pid, const ChildProcess::Options::IdMapping& mapping) {
  const std::pair<std::string, std::string> files[] = {
      {"uid_map", absl::StrCat("0 ", mapping.uid, " 1\n")},
      {"gid_map", absl::StrCat("0 ", mapping.gid, " 1\n")},
  };
  for (const auto& [name, text] : files) {
    const std::string path = absl::StrCat("/proc/", pid, "/", name);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus(absl::StrCat("spawn: open ", path));
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      return ErrnoStatus(absl::StrCat("spawn: write ", path));
    }
  }
  return absl::OkStatus();
}

std::string DescribeClone(const ChildProcess::Options& options) {
  std::vector<std::string> what;
  if (options.user_namespace.has_value()) what.push_back("new user namespace");
  if (options.new_pid_namespace) what.push_back("new PID namespace");
  if (options.cgroup_fd >= 0) what.push_back("into a cgroup");
  return what.empty() ? "fork" : absl::StrCat("clone3 (", absl::StrJoin(what, " / "), ")");
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
  if (options.pass_fds.size() > kMaxPassedFds) {
    return absl::InvalidArgumentError(absl::StrCat("spawn: ", options.pass_fds.size(), " fds to pass (at most ",
                                                   kMaxPassedFds, ")"));
  }
  std::vector<char*> argv;
  argv.reserve(options.argv.size() + 1);
  for (const std::string& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  ChildPlan plan;
  plan.argv = argv.data();
  for (int fd : options.pass_fds) plan.pass_fds[plan.pass_count++] = fd;
  plan.input_fd = options.input_fd;
  plan.output_fd = options.output_fd;
  plan.die_with_parent = options.die_with_spawning_thread;
  plan.parent = options.new_pid_namespace ? 0 : ::getpid();

  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) return ErrnoStatus("spawn: pipe2");
  UniqueFd error_read(error_pipe[0]);
  UniqueFd error_write(error_pipe[1]);
  plan.error_fd = error_write.get();
  UniqueFd maps_ready_read;
  UniqueFd maps_ready_write;
  UniqueFd exec_fd;
  if (options.user_namespace.has_value()) {
    int maps_pipe[2];
    if (::pipe2(maps_pipe, O_CLOEXEC) != 0) return ErrnoStatus("spawn: pipe2");
    maps_ready_read.Reset(maps_pipe[0]);
    maps_ready_write.Reset(maps_pipe[1]);
    plan.maps_ready_fd = maps_ready_read.get();
    plan.maps_ready_write_fd = maps_ready_write.get();
    exec_fd.Reset(::open(options.argv[0].c_str(), O_PATH | O_CLOEXEC));
    if (!exec_fd.valid()) return ErrnoStatus(absl::StrCat("spawn: open ", options.argv[0]));
    plan.exec_fd = exec_fd.get();
  }

  const pid_t pid = ForkChild(options);
  if (pid < 0) return ErrnoStatus(absl::StrCat("spawn: ", DescribeClone(options)));
  if (pid == 0) ExecChild(plan);
  error_write.Reset();
  maps_ready_read.Reset();

  ChildProcess child;
  child.pid_ = pid;
  // We are the parent and have not reaped it, so the pid cannot have been recycled yet.
  child.pidfd_.Reset(PidfdOpen(pid));
  if (!child.pidfd_.valid()) return ErrnoStatus("spawn: pidfd_open");  // ~ChildProcess kills and reaps it
  if (options.user_namespace.has_value()) {
    // On failure the child reads EOF and exits; ~ChildProcess reaps it.
    RETURN_IF_ERROR(WriteIdMaps(pid, *options.user_namespace));
    if (::write(maps_ready_write.get(), "m", 1) != 1) return ErrnoStatus("spawn: maps-ready pipe");
    maps_ready_write.Reset();
  }

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

absl::Status ChildProcess::CheckUserNamespaces() {
  if (::geteuid() != 0) return absl::PermissionDeniedError("not root (an id other than one's own cannot be mapped)");
  clone_args args{};
  args.flags = CLONE_NEWUSER;
  args.exit_signal = SIGCHLD;
  const pid_t pid = static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof(args)));
  if (pid < 0) {
    const int err = errno;
    if (err == EPERM) return ErrnoStatus("clone3(CLONE_NEWUSER) (a chrooted process, or user namespaces off)", err);
    if (err == ENOSPC) return ErrnoStatus("clone3(CLONE_NEWUSER) (user.max_user_namespaces reached)", err);
    return ErrnoStatus("clone3(CLONE_NEWUSER)", err);
  }
  if (pid == 0) ::_exit(0);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return absl::OkStatus();
}

absl::Status ChildProcess::Signal(int signal, int value) {
  if (!valid()) return absl::FailedPreconditionError("signal: no child process");
  if (!pidfd_.valid()) {
    // Only when pidfd_open failed in Spawn: the child is not reaped yet, so its pid cannot have been recycled.
    if (reaped_) return absl::OkStatus();
    const int rc = value == 0 ? ::kill(pid_, signal) : ::sigqueue(pid_, signal, sigval{.sival_int = value});
    if (rc != 0 && errno != ESRCH) return ErrnoStatus(absl::StrCat("kill pid ", pid_));
    return absl::OkStatus();
  }
  if (PidfdSendSignal(pidfd_.get(), signal, value) != 0 && errno != ESRCH) {
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
