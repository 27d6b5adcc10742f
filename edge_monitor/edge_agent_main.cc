#include "edge_monitor/edge_agent_main.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "edge_monitor/dns_sd.h"
#include "edge_monitor/edge_agent_flags.h"
#include "edge_monitor/edge_announcement.h"
#include "edge_monitor/edge_agent_server.h"
#include "edge_monitor/edge_control.h"
#include "edge_monitor/process_vm_runtime_factory.h"
#include "hypervisor/base/control_socket.h"
#include "hypervisor/base/log.h"
#include "hypervisor/kvm/page_walk_mode.h"

namespace coalesce {
namespace {

// How often the announced TXT record follows the agent's capacity, load and battery.
constexpr int kAnnounceRefreshSeconds = 5;

std::string DefaultAnnounceName(int port) {
  char host[64] = {};
  ::gethostname(host, sizeof(host) - 1);
  return absl::StrFormat("%s port %d", host, port).substr(0, 63);
}

}  // namespace

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
  // The vCPUs this host lends walk the guest's page tables with this host's KVM.
  for (const std::string& remark : CoalescedPagingRemarks()) LOG_WARN("%s", remark);

  std::unique_ptr<DnsSdAnnouncer> announcer;
  if (flags->announce) {
    const std::string name =
        flags->announce_name.empty() ? DefaultAnnounceName((*server)->port()) : flags->announce_name;
    auto started = DnsSdAnnouncer::Start(name, static_cast<uint16_t>((*server)->port()),
                                         AnnouncementTxt(service.CapacitySnapshot(), security.tls != nullptr));
    if (!started.ok()) {
      std::fprintf(stderr, "coalesce: edge: --announce: %.*s\n", static_cast<int>(started.status().message().size()),
                   started.status().message().data());
      control->reset();
      (*server)->Shutdown();
      return 2;
    }
    announcer = *std::move(started);
    std::printf("edge agent announcing '%s' (%s) on the local network\n", name.c_str(), kDnsSdServiceType);
    std::fflush(stdout);
  }

  // Waits for a shutdown signal; meanwhile the announcement follows the agent's state, and the log says when the
  // TLS files were rotated.
  int signal_number = -1;
  const timespec refresh{.tv_sec = kAnnounceRefreshSeconds, .tv_nsec = 0};
  std::optional<TlsRotationWatch> rotation;
  if (security.tls) rotation.emplace(security.tls->files);
  while (signal_number < 0) {
    signal_number = sigtimedwait(&shutdown_signals, nullptr, &refresh);
    if (rotation) rotation->Poll();
    if (signal_number < 0 && announcer) {
      if (absl::Status st = announcer->UpdateTxt(AnnouncementTxt(service.CapacitySnapshot(), security.tls != nullptr));
          !st.ok()) {
        LOG_WARN("edge agent: %s", st.ToString());
      }
    }
  }
  LOG_INFO("edge agent: signal %d, stopping every hosted VM", signal_number);
  announcer.reset();  // withdrawn first: no home should pick an agent that is going away
  control->reset();  // no revoke races the shutdown
  (*server)->Shutdown();
  return 0;
}

}  // namespace coalesce
