// The default VmRuntimeFactory: one child process per VM, running `<executable> remote-node <flags>` as described in
// remote_node_args.h. A VM's runtime shares nothing with another's: separate address spaces, fds and KVM VMs.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "edge_monitor/runtime_cgroup.h"
#include "edge_monitor/vm_runtime_factory.h"
#include "hypervisor/base/child_process.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {

struct ProcessVmRuntimeOptions {
  // The agent's own binary by default, so `coalesce edge` starts `coalesce remote-node`.
  std::string executable = "/proc/self/exe";
  // Arguments between the executable and the RemoteNodeArgs flags.
  std::vector<std::string> leading_args = {"remote-node"};
  // When the agent runs as root: each runtime in its own user namespace (root there, nobody outside; given the
  // agent's /dev/kvm and /dev/userfaultfd, which it could not open itself) and PID namespace; and, where the host
  // has cgroup v2 with the cpu and memory controllers, in its own cgroup with CPU and memory limits
  // (runtime_cgroup.h). What is not available is said once, at construction.
  bool confine = true;
  std::string cgroup_mount = "/sys/fs/cgroup";
};

class ProcessVmRuntimeFactory final : public VmRuntimeFactory {
 public:
  explicit ProcessVmRuntimeFactory(ProcessVmRuntimeOptions options = {});

  absl::StatusOr<std::unique_ptr<HostedVm>> Start(const pb::HostVcpusRequest& request, absl::Time deadline) override;

  // The full argv Start() runs for `request` (exposed so tests and docs show the exact contract).
  std::vector<std::string> CommandLine(const pb::HostVcpusRequest& request) const;

 private:
  const ProcessVmRuntimeOptions options_;
  bool new_pid_namespace_ = false;
  // Opened by the agent (root) for runtimes that cannot open them; invalid where that failed.
  UniqueFd kvm_device_;
  UniqueFd userfaultfd_device_;
  std::optional<ChildProcess::Options::IdMapping> user_namespace_;
  std::unique_ptr<RuntimeCgroups> cgroups_;  // null: no cgroup limits on this host
};

}  // namespace coalesce
