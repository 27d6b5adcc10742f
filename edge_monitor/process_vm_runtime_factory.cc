#include "edge_monitor/process_vm_runtime_factory.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "edge_monitor/process_hosted_vm.h"
#include "edge_monitor/host_request_validator.h"
#include "edge_monitor/remote_node_args.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {

ProcessVmRuntimeFactory::ProcessVmRuntimeFactory(ProcessVmRuntimeOptions options) : options_(std::move(options)) {
  if (!options_.confine) return;
  new_pid_namespace_ = ::geteuid() == 0;
  if (!new_pid_namespace_) LOG_WARN("edge: not root: runtimes share this agent's PID namespace");
  absl::StatusOr<std::unique_ptr<RuntimeCgroups>> cgroups = RuntimeCgroups::Open(options_.cgroup_mount);
  if (cgroups.ok()) {
    cgroups_ = *std::move(cgroups);
    LOG_INFO("edge: each runtime in its own cgroup under %s (CPU, memory, no swap)", cgroups_->path());
  } else {
    LOG_WARN("edge: runtimes run without cgroup limits: %s", cgroups.status().message());
  }
}

std::vector<std::string> ProcessVmRuntimeFactory::CommandLine(const pb::HostVcpusRequest& request) const {
  RemoteNodeArgs args;
  args.vm_id = request.vm_id();
  args.guest_memory_bytes = request.guest_memory_bytes();
  args.guest_vcpu_count = request.guest_vcpu_count();
  args.vcpu_ids.assign(request.vcpu_ids().begin(), request.vcpu_ids().end());
  args.vcpus_arrive = request.vcpus_arrive();
  args.lent_memory_bytes = request.lent_memory_bytes();
  args.home_address = request.home_data_plane_address();
  args.tsc_offset = request.tsc_offset();
  if (request.node_id() != 0) args.node_id = request.node_id();
  if (!request.cpu_model().empty()) args.cpu_model = request.cpu_model();
  args.home_only_memory = request.home_only_memory();
  args.link = request.link_emulation();
  args.ready_fd = 3;           // ChildProcess::Options::pass_fd lands there
  args.data_plane_key_fd = 0;  // stdin: the pipe Start() fills with the key
  std::vector<std::string> argv = {options_.executable};
  argv.insert(argv.end(), options_.leading_args.begin(), options_.leading_args.end());
  for (std::string& flag : args.ToArgs()) argv.push_back(std::move(flag));
  return argv;
}

absl::StatusOr<std::unique_ptr<HostedVm>> ProcessVmRuntimeFactory::Start(const pb::HostVcpusRequest& request,
                                                                          absl::Time deadline) {
  // The key goes to the runtime through a pipe (its stdin), never on argv where any local user could read it.
  // 32 bytes fit a pipe's buffer, so the write completes before the child runs.
  int key_pipe[2];
  if (::pipe2(key_pipe, O_CLOEXEC) != 0) return ErrnoStatus("data-plane key pipe");
  UniqueFd key_read(key_pipe[0]);
  UniqueFd key_write(key_pipe[1]);
  const std::string& key = request.data_plane_key();
  if (::write(key_write.get(), key.data(), key.size()) != static_cast<ssize_t>(key.size())) {
    return ErrnoStatus("writing the data-plane key to the runtime's pipe");
  }
  key_write.Reset();
  RuntimeLaunch launch;
  launch.argv = CommandLine(request);
  launch.ready_deadline = deadline;
  launch.input = std::move(key_read);
  launch.new_pid_namespace = new_pid_namespace_;
  if (cgroups_ != nullptr) {
    ASSIGN_OR_RETURN(launch.cgroup,
                     cgroups_->Create(request.vm_id(), static_cast<uint32_t>(request.vcpu_ids_size()),
                                      MemoryHeld(request)));
  }
  auto vm = ProcessHostedVm::Launch(absl::StrCat("VM ", request.vm_id()), std::move(launch));
  if (!vm.ok()) return vm.status();
  return std::unique_ptr<HostedVm>(*std::move(vm));
}

}  // namespace coalesce
