#include "edge_monitor/process_hosted_vm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {
namespace {

constexpr absl::Duration kDefaultGrace = absl::Seconds(2);
constexpr absl::Duration kExitAfterEofWait = absl::Seconds(1);

enum class ReadyResult { kReady, kClosed, kTimedOut, kError };

ReadyResult WaitForReadyByte(int fd, absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return ReadyResult::kTimedOut;
    pollfd pfd{fd, POLLIN, 0};
    const int timeout_ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 60'000));
    const int r = ::poll(&pfd, 1, timeout_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ReadyResult::kError;
    }
    if (r == 0) continue;
    char byte;
    const ssize_t n = ::read(fd, &byte, 1);
    if (n == 1) return ReadyResult::kReady;
    if (n == 0) return ReadyResult::kClosed;
    if (errno != EINTR && errno != EAGAIN) return ReadyResult::kError;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ProcessHostedVm>> ProcessHostedVm::Launch(std::string name, RuntimeLaunch launch) {
  const absl::Time ready_deadline = launch.ready_deadline;
  int ready_pipe[2];
  if (::pipe2(ready_pipe, O_CLOEXEC) != 0) return ErrnoStatus("runtime ready pipe");
  UniqueFd ready_read(ready_pipe[0]);

  std::unique_ptr<ProcessHostedVm> vm(new ProcessHostedVm(std::move(name)));
  // The supervisor owns the write end and closes it right after fork, so EOF here means the child closed its copy.
  vm->supervisor_ = std::thread(&ProcessHostedVm::Supervise, vm.get(), std::move(launch), ready_pipe[1]);
  absl::Status spawn_status;
  {
    absl::MutexLock lock(&vm->mu_);
    vm->mu_.Await(absl::Condition(&vm->spawn_done_));
    spawn_status = vm->spawn_status_;
  }
  if (!spawn_status.ok()) {
    vm->supervisor_.join();
    return absl::Status(spawn_status.code(), absl::StrCat(vm->name_, ": ", spawn_status.message()));
  }

  switch (WaitForReadyByte(ready_read.get(), ready_deadline)) {
    case ReadyResult::kReady:
      return vm;
    case ReadyResult::kClosed: {
      // Usually the child died; give it a moment so the error names its exit status.
      {
        absl::MutexLock lock(&vm->mu_);
        vm->mu_.AwaitWithTimeout(absl::Condition(&vm->exited_), kExitAfterEofWait);
      }
      vm->Stop(absl::ZeroDuration(), RuntimeStopReason::kAbandoned);
      return absl::InternalError(
          absl::StrCat(vm->name_, ": runtime ended during start-up (", vm->Status().detail, ")"));
    }
    case ReadyResult::kTimedOut:
      vm->Stop(absl::ZeroDuration(), RuntimeStopReason::kAbandoned);
      return absl::DeadlineExceededError(absl::StrCat(vm->name_, ": runtime did not report ready in time"));
    case ReadyResult::kError:
      break;
  }
  const absl::Status error = ErrnoStatus(absl::StrCat(vm->name_, ": waiting for the runtime to be ready"));
  vm->Stop(absl::ZeroDuration(), RuntimeStopReason::kAbandoned);
  return error;
}

void ProcessHostedVm::Supervise(RuntimeLaunch launch, int ready_write_fd) {
  ChildProcess::Options options;
  options.argv = std::move(launch.argv);
  options.pass_fds = {ready_write_fd};
  options.pass_fds.insert(options.pass_fds.end(), launch.device_fds.begin(), launch.device_fds.end());
  options.input_fd = launch.input.get();
  options.new_pid_namespace = launch.new_pid_namespace;
  options.user_namespace = launch.user_namespace;
  options.cgroup_fd = launch.cgroup != nullptr ? launch.cgroup->dir_fd() : -1;
  absl::StatusOr<ChildProcess> child = ChildProcess::Spawn(options);
  ::close(ready_write_fd);
  launch.input.Reset();
  // The cgroup lives on this thread's stack until the child is reaped (a cgroup with a process cannot be removed).
  std::unique_ptr<VmCgroup> cgroup = std::move(launch.cgroup);
  {
    absl::MutexLock lock(&mu_);
    spawn_done_ = true;
    spawn_status_ = child.status();
    if (!child.ok()) return;
    child_ = *std::move(child);
    pid_ = child_.pid();
  }
  LOG_INFO("%s: runtime started, pid %d", name_, child_.pid());
  absl::StatusOr<int> status = child_.Wait();
  absl::MutexLock lock(&mu_);
  exited_ = true;
  // Wait() fails only on a broken host invariant (someone else reaped our child); report it as a kill.
  wait_status_ = status.ok() ? *status : SIGKILL;
  if (!status.ok()) LOG_ERROR("%s: %s", name_, std::string(status.status().message()));
  LOG_INFO("%s: runtime pid %d %s", name_, pid_, DescribeWaitStatus(wait_status_));
}

ProcessHostedVm::~ProcessHostedVm() {
  Stop(kDefaultGrace, RuntimeStopReason::kUnspecified);  // normally ended already: Stop is idempotent
  if (supervisor_.joinable()) supervisor_.join();
}

HostedVmStatus ProcessHostedVm::Status() const {
  absl::MutexLock lock(&mu_);
  HostedVmStatus status;
  status.pid = static_cast<uint32_t>(pid_);
  if (!spawn_status_.ok()) {
    status.detail = std::string(spawn_status_.message());
    status.exit_code = -1;
    return status;
  }
  status.running = spawn_done_ && !exited_;
  if (status.running) {
    status.detail = stop_requested_ ? "stopping" : "running";
    return status;
  }
  status.stopped = stop_requested_;
  status.exit_code = WaitStatusToExitCode(wait_status_);
  status.detail = DescribeWaitStatus(wait_status_);
  return status;
}

void ProcessHostedVm::Stop(absl::Duration grace, RuntimeStopReason reason) {
  {
    absl::MutexLock lock(&mu_);
    if (!spawn_done_ || !spawn_status_.ok() || exited_) return;
    stop_requested_ = true;
  }
  if (grace > absl::ZeroDuration()) {
    if (absl::Status st = child_.Signal(SIGTERM, static_cast<int>(reason)); !st.ok()) {
      LOG_WARN("%s: %s", name_, std::string(st.message()));
    }
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&exited_), grace)) return;
    LOG_WARN("%s: runtime pid %d ignored SIGTERM for %s; killing it", name_, pid_, absl::FormatDuration(grace));
  }
  if (absl::Status st = child_.Signal(SIGKILL); !st.ok()) LOG_WARN("%s: %s", name_, std::string(st.message()));
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&exited_));
}

}  // namespace coalesce
