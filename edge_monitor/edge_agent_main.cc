#include "edge_monitor/edge_agent_main.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "edge_monitor/edge_agent_flags.h"
#include "edge_monitor/edge_agent_server.h"
#include "edge_monitor/edge_control.h"
#include "edge_monitor/process_vm_runtime_factory.h"
#include "hypervisor/base/control_socket.h"
#include "hypervisor/base/log.h"

namespace coalesce {

int RunEdgeAgentMain(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  auto flags = ParseEdgeAgentFlags(args, HostCapacity());
  if (!flags.ok()) {
    std::fprintf(stderr, "coalesce: %.*s\n", static_cast<int>(flags.status().message().size()),
                 flags.status().message().data());
    return 2;
  }
  if (flags->help) {
    std::fputs(EdgeAgentUsage(), stdout);
    return 0;
  }
  SetLogLevel(flags->log_level.value_or(LogLevel::kInfo));
  auto tls = LoadTls(flags->tls);
  if (!tls.ok()) {
    std::fprintf(stderr, "coalesce: edge: %.*s\n", static_cast<int>(tls.status().message().size()),
                 tls.status().message().data());
    return 2;
  }
  ControlPlaneSecurity security;
  if (tls->has_value()) security.tls = std::make_shared<const TlsMaterial>(**tls);
  security.insecure = flags->insecure;
  if (flags->insecure && security.tls == nullptr) {
    std::fprintf(stderr, "coalesce: edge: --insecure: the control plane is plaintext, and any host that reaches "
                         "--listen may start VMs here\n");
  }

  // Block the shutdown signals before gRPC starts its threads; a sigwait below turns them into an orderly stop.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGINT);
  sigaddset(&shutdown_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);

  ProcessVmRuntimeOptions runtime_options;
  if (!flags->runtime_executable.empty()) runtime_options.executable = flags->runtime_executable;
  EdgeAgentService::Options service_options;
  service_options.capacity = flags->capacity;
  service_options.limits = flags->limits;
  service_options.departure_grace = flags->departure_grace;
  service_options.max_lease = flags->max_lease;
  auto server = EdgeAgentServer::Start(flags->listen, service_options,
                                       std::make_unique<ProcessVmRuntimeFactory>(runtime_options), security);
  if (!server.ok()) {
    std::fprintf(stderr, "coalesce: %.*s\n", static_cast<int>(server.status().message().size()),
                 server.status().message().data());
    return server.status().code() == absl::StatusCode::kFailedPrecondition ? 2 : 1;
  }
  // The default socket is named after the port; another agent on that port (in another network namespace) may
  // hold the name already, and then this one adds its pid rather than refusing to start.
  EdgeAgentService& service = (*server)->service();
  auto handler = [&service](std::string_view line) { return EdgeControlCommand(service, line); };
  std::string control_path =
      !flags->control.empty() ? flags->control : ControlSocketPath(absl::StrCat("edge-", (*server)->port()));
  auto control = ControlServer::Start(control_path, handler);
  if (!control.ok() && flags->control.empty() && absl::IsAlreadyExists(control.status())) {
    control_path = ControlSocketPath(absl::StrCat("edge-", (*server)->port(), "-", ::getpid()));
    control = ControlServer::Start(control_path, handler);
  }
  if (!control.ok()) {
    std::fprintf(stderr, "coalesce: edge: control socket: %.*s\n", static_cast<int>(control.status().message().size()),
                 control.status().message().data());
    (*server)->Shutdown();
    return 2;
  }
  // Scripts and tests that listen on port 0 read the bound address from here.
  std::printf("edge agent listening on %s capacity %s control %s\n", (*server)->address().c_str(),
              flags->capacity.ToString().c_str(), control_path.c_str());
  std::fflush(stdout);

  int signal_number = 0;
  while (sigwait(&shutdown_signals, &signal_number) != 0) {
  }
  LOG_INFO("edge agent: signal %d, stopping every hosted VM", signal_number);
  control->reset();  // no revoke races the shutdown
  (*server)->Shutdown();
  return 0;
}

}  // namespace coalesce
