#include "hypervisor/cli/discover_command.h"

#include <cstdio>

#include "absl/strings/str_join.h"
#include "edge_monitor/dns_sd.h"
#include "hypervisor/base/flag_parser.h"
#include "hypervisor/vcpu/exit_status.h"

namespace coalesce {
namespace {

const char kDiscoverUsage[] =
    "usage: coalesce discover [--wait SECONDS]\n"
    "\n"
    "Browses the local network for edge agents announced by DNS-SD (multicast DNS, service type\n"
    "_coalesce._tcp; `coalesce edge --announce`) for --wait seconds (default 3, 0.5 to 60) and prints one\n"
    "line per agent: its name, the address homes reach it at, and its TXT record (free/total vCPUs and\n"
    "memory in MiB, load per CPU, battery, VMs hosted, whether it requires mutual TLS).\n"
    "`coalesce run --discover dns-sd` asks the same agents for a lease.\n"
    "\n"
    "exit status: 0 browsed (whether or not any agent answered); 2 bad usage; 8 no mDNS responder could run.\n";

}  // namespace

int DiscoverCommand(const std::vector<std::string>& args) {
  double wait_s = 3;
  bool help = false;
  FlagParser flags;
  flags.Switch("--help", &help).Alias("-h", "--help").Value("--wait", StoreSeconds(&wait_s, 0.5, 60));
  if (auto done = ParseCommandLine(flags, args, help, "coalesce discover", kDiscoverUsage, exit_status::kUsage))
    return *done;
  absl::StatusOr<std::vector<DnsSdService>> found = BrowseDnsSd(absl::Seconds(wait_s));
  if (!found.ok()) {
    std::fprintf(stderr, "coalesce discover: %s\n", std::string(found.status().message()).c_str());
    return exit_status::kHostFailure;
  }
  std::printf("%zu edge agent(s) announced on the local network (%s, %.1f s):\n", found->size(), kDnsSdServiceType,
              wait_s);
  for (const DnsSdService& s : *found) {
    std::printf("  %s  %s  %s\n", s.instance.c_str(), s.agent_address().c_str(), absl::StrJoin(s.txt, " ").c_str());
  }
  return 0;
}

}  // namespace coalesce
