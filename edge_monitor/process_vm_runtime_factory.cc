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

namespace {

// The runtime's uid and gid on the host when it runs in a user namespace: nobody, as the sandbox's own drop.
constexpr ChildProcess::Options::IdMapping kRuntimeOutsideIds{65534, 65534};

UniqueFd OpenDevice(const char* path, std::string& why_not) {
  UniqueFd fd(::open(path, O_RDWR | O_CLOEXEC));
  if (!fd.valid()) why_not = std::string(ErrnoStatus(absl::StrCat("cannot open ", path)).message());
  return fd;
}

}  // namespace

ProcessVmRuntimeFactory::ProcessVmRuntimeFactory(ProcessVmRuntimeOptions options) : options_(std::move(options)) {
  if (!options_.confine) return;
  new_pid_namespace_ = ::geteuid() == 0;
  if (!new_pid_namespace_) {
    LOG_WARN("edge: not root: runtimes share this agent's PID and user namespaces");
  } else {
    // A runtime mapped to nobody cannot open /dev/kvm (root:kvm 0660), and userfaultfd(2) would give it user-mode
    // faults only, which KVM's own accesses to guest memory do not raise: it gets both devices from here.
    std::string why_not;
    kvm_device_ = OpenDevice("/dev/kvm", why_not);
    if (kvm_device_.valid()) userfaultfd_device_ = OpenDevice("/dev/userfaultfd", why_not);
    if (why_not.empty()) {
      if (absl::Status st = ChildProcess::CheckUserNamespaces(); !st.ok()) why_not = std::string(st.message());
    }
    if (why_not.empty()) {
      user_namespace_ = kRuntimeOutsideIds;
      LOG_INFO("edge: each runtime in its own user namespace (root there, uid %u outside)", user_namespace_->uid);
    } else {
      LOG_WARN("edge: runtimes run without a user namespace (%s): each drops to nobody itself once built",
               why_not);
    }
  }
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
  args.hotplug_memory_bytes = request.hotplug_memory_bytes();
  args.home_address = request.home_data_plane_address();
  args.tsc_offset = request.tsc_offset();
  if (request.node_id() != 0) args.node_id = request.node_id();
  if (!request.cpu_model().empty()) args.cpu_model = request.cpu_model();
  args.home_only_memory = request.home_only_memory();
  args.link = request.link_emulation();
  args.ready_fd = 3;  // the first of ChildProcess::Options::pass_fds; the devices follow (Start)
  int next_fd = 4;
  if (kvm_device_.valid()) args.kvm_fd = next_fd++;
  if (userfaultfd_device_.valid()) args.userfaultfd_device_fd = next_fd++;
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
  launch.user_namespace = user_namespace_;
  for (const UniqueFd* device : {&kvm_device_, &userfaultfd_device_}) {
    if (device->valid()) launch.device_fds.push_back(device->get());
  }
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
