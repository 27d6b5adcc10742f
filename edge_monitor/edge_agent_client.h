// The home node's handle on one edge agent. Every call carries a deadline; every error is an absl::Status whose
// message starts with "edge agent <address>: <RPC>: " and whose code is the gRPC code (RESOURCE_EXHAUSTED for over
// capacity, DEADLINE_EXCEEDED / UNAVAILABLE for an agent that cannot be reached, ...).
#pragma once

#include <memory>
#include <string>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coalesce/edge_agent.grpc.pb.h"
#include "edge_monitor/tls.h"

namespace coalesce {

struct EdgeAgentClientOptions {
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration rpc_timeout = absl::Seconds(10);   // GetCapacity, StopVm (plus its grace), GetVmState
  absl::Duration host_timeout = absl::Seconds(60);  // HostVcpus: includes starting the remote runtime
  ControlPlaneSecurity security;                    // mutual TLS, or plaintext on loopback (edge_monitor/tls.h)
};

class EdgeAgentClient final {
 public:
  // Validates `address` (host:port), applies the plaintext rule (tls.h) and waits up to connect_timeout for a
  // connection. An unreachable agent fails with DEADLINE_EXCEEDED naming the address and, where a TLS probe
  // finds one, the reason (our certificate refused, the agent's not trusted, TLS on one side only).
  static absl::StatusOr<std::unique_ptr<EdgeAgentClient>> Connect(const std::string& address,
                                                                  const EdgeAgentClientOptions& options = {});

  absl::StatusOr<pb::Capacity> GetCapacity();
  absl::StatusOr<pb::VmStatus> HostVcpus(const pb::HostVcpusRequest& request);
  // grace: SIGTERM-to-SIGKILL time on the agent; zero: the agent's default.
  absl::StatusOr<pb::VmStatus> StopVm(const std::string& vm_id, absl::Duration grace = absl::ZeroDuration());
  absl::StatusOr<pb::VmStatus> GetVmState(const std::string& vm_id);
  // Extends the VM's lease from now (lease_seconds 0: the agent's longest); the reply's lease_ms_left is what the
  // agent granted. FAILED_PRECONDITION once the lease has ended.
  absl::StatusOr<pb::VmStatus> RenewLease(const std::string& vm_id, uint32_t lease_seconds);

  const std::string& address() const { return address_; }

 private:
  EdgeAgentClient(std::string address, EdgeAgentClientOptions options, std::shared_ptr<grpc::Channel> channel);

  absl::Status ToStatus(const grpc::Status& status, const char* rpc, absl::Duration timeout) const;

  const std::string address_;
  const EdgeAgentClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::EdgeAgent::Stub> stub_;
};

}  // namespace coalesce
