// The default VmRuntimeFactory: one child process per VM, running `<executable> remote-node <flags>` as described in
// remote_node_args.h. A VM's runtime shares nothing with another's: separate address spaces, fds and KVM VMs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "edge_monitor/runtime_cgroup.h"
#include "edge_monitor/vm_runtime_factory.h"

namespace coalesce {

struct ProcessVmRuntimeOptions {
  // The agent's own binary by default, so `coalesce edge` starts `coalesce remote-node`.
  std::string executable = "/proc/self/exe";
  // Arguments between the executable and the RemoteNodeArgs flags.
  std::vector<std::string> leading_args = {"remote-node"};
  // Each runtime in its own PID namespace (when the agent runs as root) and its own cgroup v2 with CPU and memory
  // limits (where the host has cgroup v2 with those controllers: runtime_cgroup.h). What is not available is
  // said once, at construction.
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
  std::unique_ptr<RuntimeCgroups> cgroups_;  // null: no cgroup limits on this host
};

}  // namespace coalesce
