// A VM hosted as one child process (the remote vCPU runtime), supervised by a thread of its own.
//
// The supervisor thread forks the child and blocks in waitpid until it ends, so the child's PR_SET_PDEATHSIG
// (bound to the spawning thread) fires only if the whole agent dies. The child reports readiness by writing one byte
// to its fd 3 (see remote_node_args.h).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "edge_monitor/hosted_vm.h"
#include "edge_monitor/runtime_cgroup.h"
#include "hypervisor/base/child_process.h"

namespace coalesce {

struct RuntimeLaunch {
  std::vector<std::string> argv;
  absl::Time ready_deadline;
  UniqueFd input;                    // if valid, becomes the child's stdin (the pipe with the data-plane secret)
  std::vector<int> device_fds;       // become the child's fds 4, 5, ... (fd 3 is the ready pipe); not owned
  bool new_pid_namespace = false;    // the child is pid 1 of its own PID namespace
  // The child is root of its own user namespace, this id outside (ChildProcess::Options::user_namespace).
  std::optional<ChildProcess::Options::IdMapping> user_namespace;
  std::unique_ptr<VmCgroup> cgroup;  // the child starts in it; removed once the child has been reaped
};

class ProcessHostedVm final : public HostedVm {
 public:
  // Starts `launch.argv` and waits until the child reports ready. Fails, leaving no process behind, if exec fails,
  // the child exits or closes fd 3 before reporting ready, or the ready deadline passes. `name` is used in messages.
  static absl::StatusOr<std::unique_ptr<ProcessHostedVm>> Launch(std::string name, RuntimeLaunch launch);

  // Stops the child (SIGTERM, then SIGKILL after 2 s) and joins the supervisor.
  ~ProcessHostedVm() override;

  HostedVmStatus Status() const override;
  void Stop(absl::Duration grace, RuntimeStopReason reason) override;

 private:
  explicit ProcessHostedVm(std::string name) : name_(std::move(name)) {}

  void Supervise(RuntimeLaunch launch, int ready_write_fd);

  const std::string name_;
  std::thread supervisor_;

  mutable absl::Mutex mu_;
  bool spawn_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status spawn_status_ ABSL_GUARDED_BY(mu_);
  bool exited_ ABSL_GUARDED_BY(mu_) = false;
  int wait_status_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  pid_t pid_ ABSL_GUARDED_BY(mu_) = 0;
  // Set by the supervisor under mu_ before spawn_done_; afterwards its pidfd is only read (Signal) by any thread,
  // and Wait() is called by the supervisor alone.
  ChildProcess child_;
};

}  // namespace coalesce
