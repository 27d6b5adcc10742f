// How the edge agent starts the remote vCPU runtime of a VM. The default (ProcessVmRuntimeFactory) runs each VM in
// its own child process; vcpu_remote/ may provide another implementation (e.g. in-process, for tests of the data
// plane) without touching the agent.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coalesce/edge_agent.pb.h"
#include "edge_monitor/hosted_vm.h"

namespace coalesce {

class VmRuntimeFactory {
 public:
  virtual ~VmRuntimeFactory() = default;

  // Starts the runtime for a validated request and returns once it is running (its vCPUs exist and it reached the
  // home node), or fails. Must give up by `deadline`. Called without the agent's lock held, possibly from several
  // threads at once for different VMs.
  virtual absl::StatusOr<std::unique_ptr<HostedVm>> Start(const pb::HostVcpusRequest& request,
                                                          absl::Time deadline) = 0;
};

}  // namespace coalesce
