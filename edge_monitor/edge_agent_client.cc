#include "edge_monitor/edge_agent_client.h"

#include <algorithm>
#include <chrono>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "edge_monitor/host_port.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {
namespace {

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration timeout) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
}

}  // namespace

EdgeAgentClient::EdgeAgentClient(std::string address, EdgeAgentClientOptions options,
                                 std::shared_ptr<grpc::Channel> channel)
    : address_(std::move(address)),
      options_(options),
      channel_(std::move(channel)),
      stub_(pb::EdgeAgent::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<EdgeAgentClient>> EdgeAgentClient::Connect(const std::string& address,
                                                                          const EdgeAgentClientOptions& options) {
  auto host_port = ParseHostPort(address, "edge agent address");
  if (!host_port.ok()) return host_port.status();
  const TlsMaterial* tls = options.security.tls.get();
  RETURN_IF_ERROR(CheckPlaintextAllowed(*host_port, tls != nullptr, options.security.insecure, "edge agent"));

  grpc::ChannelArguments args;
  // An edge agent is a direct peer: an http_proxy in the environment must not capture the control plane.
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  // Retry a refused connection quickly while Connect waits, instead of gRPC's 1 s initial backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  auto channel = grpc::CreateCustomChannel(host_port->ToString(), MakeChannelCredentials(tls), args);

  if (!channel->WaitForConnected(DeadlineAfter(options.connect_timeout))) {
    const auto state = channel->GetState(/*try_to_connect=*/false);
    // gRPC says only "transient failure": a handshake of our own names a TLS reason if there is one.
    const std::string tls_reason =
        state == GRPC_CHANNEL_TRANSIENT_FAILURE ? DiagnoseTlsConnect(*host_port, tls, std::min(options.connect_timeout, absl::Seconds(3))) : "";
    return absl::DeadlineExceededError(absl::StrCat(
        "edge agent ", address, ": not reachable within ", absl::FormatDuration(options.connect_timeout),
        !tls_reason.empty()                          ? absl::StrCat(" (", tls_reason, ")")
        : state == GRPC_CHANNEL_TRANSIENT_FAILURE ? " (connection failed: no agent listening there, or the host is "
                                                     "unreachable)"
                                                   : " (no answer)"));
  }
  return std::unique_ptr<EdgeAgentClient>(new EdgeAgentClient(address, options, std::move(channel)));
}

absl::Status EdgeAgentClient::ToStatus(const grpc::Status& status, const char* rpc, absl::Duration timeout) const {
  if (status.ok()) return absl::OkStatus();
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    message = absl::StrCat("no answer within ", absl::FormatDuration(timeout), " (", message, ")");
  } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    message = absl::StrCat("agent unavailable (", message, ")");
  }
  // grpc::StatusCode and absl::StatusCode share their numbering (both follow google.rpc.Code).
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("edge agent ", address_, ": ", rpc, ": ", message));
}

absl::StatusOr<pb::Capacity> EdgeAgentClient::GetCapacity() {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(options_.rpc_timeout));
  pb::Capacity reply;
  const grpc::Status status = stub_->GetCapacity(&context, pb::GetCapacityRequest(), &reply);
  if (!status.ok()) return ToStatus(status, "GetCapacity", options_.rpc_timeout);
  return reply;
}

absl::StatusOr<pb::VmStatus> EdgeAgentClient::HostVcpus(const pb::HostVcpusRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(options_.host_timeout));
  pb::VmStatus reply;
  const grpc::Status status = stub_->HostVcpus(&context, request, &reply);
  if (!status.ok()) return ToStatus(status, "HostVcpus", options_.host_timeout);
  return reply;
}

absl::StatusOr<pb::VmStatus> EdgeAgentClient::StopVm(const std::string& vm_id, absl::Duration grace) {
  grpc::ClientContext context;
  // The agent may wait the whole grace period (its default is 2 s) before SIGKILL.
  const absl::Duration timeout = options_.rpc_timeout + (grace > absl::ZeroDuration() ? grace : absl::Seconds(2));
  context.set_deadline(DeadlineAfter(timeout));
  pb::StopVmRequest request;
  request.set_vm_id(vm_id);
  request.set_grace_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(grace)));
  pb::VmStatus reply;
  const grpc::Status status = stub_->StopVm(&context, request, &reply);
  if (!status.ok()) return ToStatus(status, "StopVm", timeout);
  return reply;
}

absl::StatusOr<pb::VmStatus> EdgeAgentClient::GetVmState(const std::string& vm_id) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(options_.rpc_timeout));
  pb::GetVmStateRequest request;
  request.set_vm_id(vm_id);
  pb::VmStatus reply;
  const grpc::Status status = stub_->GetVmState(&context, request, &reply);
  if (!status.ok()) return ToStatus(status, "GetVmState", options_.rpc_timeout);
  return reply;
}

absl::StatusOr<pb::VmStatus> EdgeAgentClient::RenewLease(const std::string& vm_id, uint32_t lease_seconds) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(options_.rpc_timeout));
  pb::RenewLeaseRequest request;
  request.set_vm_id(vm_id);
  request.set_lease_seconds(lease_seconds);
  pb::VmStatus reply;
  const grpc::Status status = stub_->RenewLease(&context, request, &reply);
  if (!status.ok()) return ToStatus(status, "RenewLease", options_.rpc_timeout);
  return reply;
}

}  // namespace coalesce
