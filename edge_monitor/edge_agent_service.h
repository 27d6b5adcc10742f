// The edge agent's gRPC service (protos/coalesce/edge_agent.proto): admits VMs within its capacity, starts one
// runtime per VM through a VmRuntimeFactory, and stops them.
//
// Each VM is hosted for a lease (at most max_lease) that its home renews; a lease that ends (not renewed in time,
// or revoked by this host's operator) sends the runtime away as the agent's own shutdown does: it hands its vCPUs
// and pages home, then exits (docs/COALESCENCE.md, "Leases").
//
// Threads: gRPC's synchronous server runs each RPC on a pool thread; the lease thread ends expired leases; the
// agent's control socket thread revokes. All state lives in `vms_` under `mu_`. Lock order: mu_, then a HostedVm's
// own lock (HostedVm::Status()). Starting and stopping a runtime can take seconds and never run under mu_: a record
// marked `starting` or `stopping` holds its resources and its id meanwhile.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coalesce/edge_agent.grpc.pb.h"
#include "edge_monitor/edge_capacity.h"
#include "edge_monitor/host_conditions.h"
#include "edge_monitor/vm_runtime_factory.h"

namespace coalesce {

class EdgeAgentService final : public pb::EdgeAgent::Service {
 public:
  struct Options {
    EdgeCapacity capacity;
    HostLimits limits;  // when this host refuses leases (load, battery)
    // Where the battery is read (tests point it at a directory of their own).
    std::string power_supply_dir = "/sys/class/power_supply";
    // Longest a runtime may take to report ready; the caller's RPC deadline shortens it.
    absl::Duration start_timeout = absl::Seconds(30);
    // SIGTERM-to-SIGKILL grace when StopVm does not give one.
    absl::Duration default_stop_grace = absl::Seconds(2);
    // SIGTERM-to-SIGKILL grace when the agent itself stops: each runtime leaves (its vCPUs go home) meanwhile.
    absl::Duration departure_grace = absl::Seconds(15);
    // The longest lease granted (and the one granted to a home that asks for none).
    absl::Duration max_lease = absl::Seconds(300);
    // How often the lease thread looks for leases that ended.
    absl::Duration lease_check_interval = absl::Milliseconds(200);
  };

  EdgeAgentService(Options options, std::unique_ptr<VmRuntimeFactory> factory);
  // Stops every VM still hosted.
  ~EdgeAgentService() override;

  grpc::Status GetCapacity(grpc::ServerContext* context, const pb::GetCapacityRequest* request,
                           pb::Capacity* reply) override;
  grpc::Status HostVcpus(grpc::ServerContext* context, const pb::HostVcpusRequest* request,
                         pb::VmStatus* reply) override;
  grpc::Status StopVm(grpc::ServerContext* context, const pb::StopVmRequest* request, pb::VmStatus* reply) override;
  grpc::Status GetVmState(grpc::ServerContext* context, const pb::GetVmStateRequest* request,
                          pb::VmStatus* reply) override;
  grpc::Status RenewLease(grpc::ServerContext* context, const pb::RenewLeaseRequest* request,
                          pb::VmStatus* reply) override;

  // The operator ends a VM's lease now (the agent's control socket, `coalesce ctl --socket PATH revoke VM`):
  // its runtime leaves as on expiry. Returns the VM's final status; NotFound / FailedPrecondition otherwise.
  absl::StatusOr<pb::VmStatus> Revoke(const std::string& vm_id);
  // One line per hosted VM: id, state, vCPUs, memory, lease left (the control socket's `leases`).
  std::string LeasesReport() const;

  // Refuses new VMs from now on and stops every running one (agent shutdown). VMs still starting are stopped by
  // their HostVcpus call when their start completes.
  void StopAll();

  pb::Capacity CapacitySnapshot() const;

 private:
  struct VmRecord {
    pb::HostVcpusRequest request;
    std::unique_ptr<HostedVm> runtime;  // Set once, under mu_, when `starting` becomes false.
    bool starting = true;
    bool stopping = false;
    absl::Time lease_end = absl::InfiniteFuture();
    std::string lease_ended;  // why the lease ended (expired, revoked); empty while it runs
  };

  static bool HoldsResources(const VmRecord& record);
  static pb::VmStatus StatusOf(const VmRecord& record, absl::Time now = absl::Now());
  // Running on a lease that has not ended and is not ending: what expiry and revoke may end.
  static bool LeaseLive(const VmRecord& record);
  absl::Duration Granted(uint32_t lease_seconds) const;
  // Sends the runtime away (SIGTERM, departure grace): its vCPUs go home. The record stays, with the reason.
  void EndLease(const std::shared_ptr<VmRecord>& record, RuntimeStopReason why);
  void LeaseLoop();

  const Options options_;
  const std::unique_ptr<VmRuntimeFactory> factory_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<VmRecord>> vms_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::thread lease_thread_;
};

}  // namespace coalesce
