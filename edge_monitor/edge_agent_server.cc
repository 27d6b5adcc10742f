#include "edge_monitor/edge_agent_server.h"

#include <chrono>

#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "edge_monitor/host_port.h"
#include "hypervisor/base/log.h"

namespace coalesce {

absl::StatusOr<std::unique_ptr<EdgeAgentServer>> EdgeAgentServer::Start(const std::string& listen,
                                                                        EdgeAgentService::Options options,
                                                                        std::unique_ptr<VmRuntimeFactory> factory,
                                                                        const ControlPlaneSecurity& security) {
  auto host_port = ParseHostPort(listen, "--listen", /*allow_port_zero=*/true);
  if (!host_port.ok()) return host_port.status();
  if (absl::Status st = CheckPlaintextAllowed(*host_port, security.tls != nullptr, security.insecure, "--listen");
      !st.ok()) {
    return st;
  }

  std::unique_ptr<EdgeAgentServer> server(new EdgeAgentServer());
  server->service_ = std::make_unique<EdgeAgentService>(std::move(options), std::move(factory));

  grpc::ServerBuilder builder;
  // Two agents must not share a port silently (gRPC enables SO_REUSEPORT by default).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Control messages are small; a peer cannot make us buffer more than this.
  builder.SetMaxReceiveMessageSize(1 << 20);
  builder.AddListeningPort(host_port->ToString(), MakeServerCredentials(security.tls.get()), &server->port_);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("edge agent: cannot listen on ", listen, " (address in use, or not an address of this host)"));
  }
  HostPort bound = *host_port;
  bound.port = static_cast<uint16_t>(server->port_);
  server->address_ = bound.ToString();
  if (security.tls != nullptr) {
    LOG_INFO("edge agent listening on %s (mutual TLS as %s, certificate valid until %s)", server->address_,
             security.tls->subject, absl::FormatTime(security.tls->not_after));
  } else {
    LOG_INFO("edge agent listening on %s (plaintext%s)", server->address_,
             security.insecure ? ", --insecure" : ": loopback only");
  }
  return server;
}

EdgeAgentServer::~EdgeAgentServer() { Shutdown(); }

void EdgeAgentServer::Shutdown() {
  if (shut_down_.exchange(true)) return;
  // VMs first: a HostVcpus still starting sees shutting_down_ and stops its runtime, so the server's wait for
  // in-flight RPCs ends.
  if (service_ != nullptr) service_->StopAll();
  if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

void EdgeAgentServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace coalesce
