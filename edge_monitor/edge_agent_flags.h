// Command-line flags of `coalesce edge`.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "edge_monitor/edge_capacity.h"
#include "edge_monitor/host_conditions.h"
#include "edge_monitor/tls.h"
#include "hypervisor/base/log.h"

namespace coalesce {

struct EdgeAgentFlags {
  bool help = false;
  std::string listen;                   // --listen HOST:PORT (required unless --help)
  EdgeCapacity capacity;                // --capacity vcpus=N,memory=SIZE; defaults to HostCapacity()
  std::string runtime_executable;       // --runtime PATH; empty: /proc/self/exe
  std::optional<LogLevel> log_level;    // --log-level debug|info|warning|error
  TlsFiles tls;                         // --tls-ca, --tls-cert, --tls-key: mutual TLS with home nodes
  bool insecure = false;                // --insecure: plaintext on a non-loopback --listen
  HostLimits limits;                    // --max-load X (per CPU), --min-battery PERCENT: when to refuse leases
  absl::Duration departure_grace = absl::Seconds(15);  // --departure-grace S: runtimes' time to leave on SIGTERM
  absl::Duration max_lease = absl::Seconds(300);       // --max-lease S: the longest lease granted
  std::string control;  // --control PATH: the operator's control socket; empty: edge-PORT in the control directory
  bool announce = false;      // --announce[=NAME]: DNS-SD on the local network (edge_monitor/dns_sd.h)
  std::string announce_name;  // empty: "HOSTNAME port PORT"
};

// `args` are the flags only (after "edge"). Accepts "--flag value" and "--flag=value". Errors name the flag.
absl::StatusOr<EdgeAgentFlags> ParseEdgeAgentFlags(const std::vector<std::string>& args,
                                                   const EdgeCapacity& default_capacity);

// The --help text.
const char* EdgeAgentUsage();

}  // namespace coalesce
