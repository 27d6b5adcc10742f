// The `coalesce` launcher: `coalesce run` boots a guest with this machine as home, `coalesce edge` runs the
// edge agent, `coalesce ctl` talks to a running VM, `coalesce daemon` serves virsh, `coalesce pki` makes the
// control plane's certificates, `coalesce discover` lists the edge agents announced on the local network.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "edge_monitor/edge_agent_main.h"
#include "hypervisor/daemon/daemon_main.h"
#include "hypervisor/base/log.h"
#include "hypervisor/cli/ctl_command.h"
#include "hypervisor/cli/discover_command.h"
#include "hypervisor/cli/pki_command.h"
#include "hypervisor/cli/run_command.h"
#include "hypervisor/cli/run_options.h"
#include "hypervisor/vcpu/exit_status.h"
#include "vcpu_remote/remote_node.h"

int main(int argc, char** argv) {
  using namespace coalesce;
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    std::fputs(kTopUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? exit_status::kUsage : 0;
  }
  std::string command = argv[1];
  if (command == "run") {
    return RunCommand(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (command == "remote-node") {
    return RunRemoteNodeMain(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (command == "daemon") {
    return daemon::RunDaemonMain(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (command == "ctl") {
    return CtlCommand(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (command == "discover") {
    return DiscoverCommand(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (command == "pki") {
    return PkiCommand(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (command == "edge") {
    return RunEdgeAgentMain(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "coalesce: unknown command '%s'\n\n%s", argv[1], kTopUsage);
  return exit_status::kUsage;
}
