#include "hypervisor/daemon/guest_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "hypervisor/base/errno_status.h"

namespace coalesce::daemon {
namespace {

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// The fields of /proc/PID[/task/TID]/stat after the command name (which may hold spaces and parentheses),
// so that fields()[0] is field 3 (state).
std::vector<std::string> StatFields(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return {};
  size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 > line.size()) return {};
  return absl::StrSplit(line.substr(close + 2), ' ', absl::SkipEmpty());
}

uint64_t TicksToNs(uint64_t ticks) {
  static const long hz = ::sysconf(_SC_CLK_TCK);
  return ticks * (1'000'000'000ULL / static_cast<uint64_t>(hz > 0 ? hz : 100));
}

uint64_t CpuTicks(const std::vector<std::string>& f) {
  // fields 14 (utime) and 15 (stime) are at indexes 11 and 12
  uint64_t u = 0, s = 0;
  if (f.size() > 12 && absl::SimpleAtoi(f[11], &u) && absl::SimpleAtoi(f[12], &s)) return u + s;
  return 0;
}

}  // namespace

absl::StatusOr<uint64_t> GuestProcess::StartTimeOf(pid_t pid) {
  std::vector<std::string> f = StatFields(absl::StrCat("/proc/", pid, "/stat"));
  uint64_t start = 0;
  if (f.size() < 20 || !absl::SimpleAtoi(f[19], &start)) {  // field 22
    return absl::NotFoundError(absl::StrCat("process ", pid, " does not exist"));
  }
  return start;
}

GuestProcess::GuestProcess(pid_t pid, uint64_t start_time, UniqueFd pidfd, bool child,
                           std::function<void(GuestEnd)> on_end)
    : pid_(pid), start_time_(start_time), pidfd_(std::move(pidfd)), child_(child), on_end_(std::move(on_end)) {
  watcher_ = std::thread([this] { Watch(); });
}

GuestProcess::~GuestProcess() {
  stop_watching_.store(true);
  if (watcher_.joinable()) watcher_.join();
}

absl::StatusOr<std::unique_ptr<GuestProcess>> GuestProcess::Launch(const std::string& binary,
                                                                   const std::vector<std::string>& args,
                                                                   const GuestPaths& paths,
                                                                   std::function<void(GuestEnd)> on_end) {
  ::unlink(paths.console_in.c_str());
  if (::mkfifo(paths.console_in.c_str(), 0600) != 0) return ErrnoStatus("mkfifo " + paths.console_in);
  // O_RDWR: the guest never sees end-of-file on its console input, whoever comes and goes on the other end.
  UniqueFd in(::open(paths.console_in.c_str(), O_RDWR | O_CLOEXEC));
  if (!in.valid()) return ErrnoStatus("open " + paths.console_in);
  UniqueFd out(::open(paths.console.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600));
  if (!out.valid()) return ErrnoStatus("open " + paths.console);
  UniqueFd err(::open(paths.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!err.valid()) return ErrnoStatus("open " + paths.log);

  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus("fork");
  if (pid == 0) {
    // Child: async-signal-safe calls only. Its own session: a signal to the daemon's group does not reach
    // the guest, which outlives the daemon.
    ::setsid();
    // SIGPWR and SIGUSR2 stay blocked across exec until `coalesce run` takes them over (BlockStopSignals):
    // their default action would end a guest that is shut down the instant it starts.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGPWR);
    sigaddset(&mask, SIGUSR2);
    ::sigprocmask(SIG_SETMASK, &mask, nullptr);
    ::signal(SIGPIPE, SIG_DFL);  // the daemon ignores it; an ignored disposition would survive exec
    // Above 2 first, so that dup2 onto 0-2 never meets its own source (a daemon started with 0-2 closed).
    const int fds[3] = {::fcntl(in.get(), F_DUPFD_CLOEXEC, 3), ::fcntl(out.get(), F_DUPFD_CLOEXEC, 3),
                        ::fcntl(err.get(), F_DUPFD_CLOEXEC, 3)};
    for (int i = 0; i < 3; ++i) {
      if (fds[i] < 0 || ::dup2(fds[i], i) < 0) ::_exit(127);
    }
    // Nothing else of the daemon's reaches the guest (files other threads opened without O_CLOEXEC).
    ::close_range(3, ~0U, 0);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  UniqueFd pidfd(PidfdOpen(pid));
  if (!pidfd.valid()) {
    const int e = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return ErrnoStatus("pidfd_open", e);
  }
  uint64_t start = StartTimeOf(pid).value_or(0);
  return std::unique_ptr<GuestProcess>(new GuestProcess(pid, start, std::move(pidfd), true, std::move(on_end)));
}

absl::StatusOr<std::unique_ptr<GuestProcess>> GuestProcess::Adopt(pid_t pid, uint64_t start_time,
                                                                  std::function<void(GuestEnd)> on_end) {
  UniqueFd pidfd(PidfdOpen(pid));
  if (!pidfd.valid()) return absl::NotFoundError(absl::StrCat("process ", pid, " has ended"));
  // Checked after the pidfd exists: from here on the pid cannot be recycled under us.
  absl::StatusOr<uint64_t> now = StartTimeOf(pid);
  if (!now.ok() || *now != start_time) {
    return absl::NotFoundError(absl::StrCat("process ", pid, " has ended (the pid now names another process)"));
  }
  return std::unique_ptr<GuestProcess>(new GuestProcess(pid, start_time, std::move(pidfd), false, std::move(on_end)));
}

void GuestProcess::Watch() {
  pollfd p{pidfd_.get(), POLLIN, 0};
  while (!stop_watching_.load()) {
    int r = ::poll(&p, 1, 200);
    if (r == 0 || (r < 0 && errno == EINTR)) continue;
    break;
  }
  if (stop_watching_.load() && !(p.revents & POLLIN)) return;
  GuestEnd end;
  if (child_) {
    int status = 0;
    if (::waitpid(pid_, &status, 0) == pid_) {
      end.known = true;
      if (WIFEXITED(status)) end.exit_status = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) end.signal = WTERMSIG(status);
    }
  }
  // After the report: whoever waits for ended() (Terminate, i.e. `virsh destroy`) then sees the domain's new
  // state. Signal() goes through the pidfd, so it cannot reach a recycled pid in between.
  if (on_end_) on_end_(end);
  ended_.store(true);
}

absl::Status GuestProcess::Signal(int sig) {
  if (ended_.load()) return absl::FailedPreconditionError("the guest process has ended");
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) != 0) {
    return ErrnoStatus(absl::StrCat("signal ", sig, " to process ", pid_));
  }
  return absl::OkStatus();
}

absl::Status GuestProcess::Terminate(int grace_ms) {
  // A paused guest stops in order as it is (its vCPUs leave their pause gates when the VM stops); SIGCONT only
  // for a process someone stopped from outside.
  (void)Signal(SIGCONT);
  (void)Signal(SIGTERM);
  auto wait_until = [this](std::chrono::steady_clock::time_point deadline) {
    while (!ended_.load() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return ended_.load();
  };
  if (wait_until(std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms))) return absl::OkStatus();
  (void)Signal(SIGKILL);
  if (wait_until(std::chrono::steady_clock::now() + std::chrono::seconds(30))) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat("process ", pid_, " did not end 30 s after SIGKILL"));
}

std::vector<VcpuThread> ReadVcpuThreads(pid_t pid) {
  std::vector<VcpuThread> out;
  const std::string task_dir = absl::StrCat("/proc/", pid, "/task");
  DIR* d = ::opendir(task_dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string base = absl::StrCat(task_dir, "/", e->d_name);
    std::ifstream comm_in(base + "/comm");
    std::string comm;
    std::getline(comm_in, comm);
    uint32_t n = 0;
    if (comm.rfind("vcpu", 0) != 0 || !absl::SimpleAtoi(comm.substr(4), &n)) continue;
    std::vector<std::string> f = StatFields(base + "/stat");
    VcpuThread t;
    t.vcpu = n;
    t.cpu_time_ns = TicksToNs(CpuTicks(f));
    if (f.size() > 36) absl::SimpleAtoi(f[36], &t.host_cpu);  // field 39: last CPU it ran on
    if (!f.empty() && !f[0].empty()) t.state = f[0][0];
    out.push_back(t);
  }
  ::closedir(d);
  return out;
}

uint64_t ProcessCpuTimeNs(pid_t pid) { return TicksToNs(CpuTicks(StatFields(absl::StrCat("/proc/", pid, "/stat")))); }

}  // namespace coalesce::daemon
