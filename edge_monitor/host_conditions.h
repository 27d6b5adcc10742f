// The edge host's own state that decides whether it lends CPUs now: its load per CPU and, on a machine with a
// battery, the charge and whether it is running on it. The agent's limits (`coalesce edge --max-load`,
// `--min-battery`) and the home user's policy (profile policies.max_edge_load, sent in HostVcpus) are checked
// against it before a lease is granted; a refusal names the figure and the limit (docs/EDGE_AGENT.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace coalesce {

struct BatteryState {
  uint32_t percent = 0;      // capacity, 0..100
  bool discharging = false;  // running on the battery (status "Discharging")
};

struct HostConditions {
  double load_per_cpu = 0;             // 1-minute load average / online CPUs
  std::optional<BatteryState> battery;  // none: no battery (a server, a VM)
};

struct HostLimits {
  std::optional<double> max_load_per_cpu;       // the agent's --max-load
  std::optional<uint32_t> min_battery_percent;  // the agent's --min-battery: refuse on battery below it
};

// This host now: getloadavg(3) and the online CPU count; the first power supply of type "Battery" under
// `power_supply_dir` (Linux: /sys/class/power_supply; each supply a directory with type, capacity, status).
HostConditions ReadHostConditions(const std::string& power_supply_dir = "/sys/class/power_supply");

// OK, or FailedPrecondition naming what is over which limit. `user_max_load` is the home user's policy
// (0: none). A battery that is charging or full never refuses: the host is on mains power.
absl::Status CheckHostConditions(const HostConditions& now, const HostLimits& agent_limits, double user_max_load);

}  // namespace coalesce
