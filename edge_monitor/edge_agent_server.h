// The edge agent's gRPC server: binds the listen address, serves EdgeAgentService, shuts down in order.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include <grpcpp/server.h>

#include "absl/status/statusor.h"
#include "edge_monitor/edge_agent_service.h"
#include "edge_monitor/tls.h"

namespace coalesce {

class EdgeAgentServer final {
 public:
  // `listen` is host:port; port 0 picks a free port (see port()). Fails with a message naming the address if it
  // cannot be bound (in use, bad host).
  // `security`: mutual TLS (every client must present a certificate from the CA), or plaintext, which only a
  // loopback `listen` allows unless security.insecure.
  static absl::StatusOr<std::unique_ptr<EdgeAgentServer>> Start(const std::string& listen,
                                                                EdgeAgentService::Options options,
                                                                std::unique_ptr<VmRuntimeFactory> factory,
                                                                const ControlPlaneSecurity& security = {});

  // Shutdown().
  ~EdgeAgentServer();
  EdgeAgentServer(const EdgeAgentServer&) = delete;
  EdgeAgentServer& operator=(const EdgeAgentServer&) = delete;

  int port() const { return port_; }
  // host:port with the bound port, for clients.
  const std::string& address() const { return address_; }
  EdgeAgentService& service() { return *service_; }

  // Stops every hosted VM, then stops serving (in-flight RPCs get up to 5 s). Idempotent.
  void Shutdown();
  // Blocks until Shutdown() has been called (from another thread).
  void Wait();

 private:
  EdgeAgentServer() = default;

  std::unique_ptr<EdgeAgentService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace coalesce
