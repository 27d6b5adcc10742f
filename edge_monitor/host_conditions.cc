#include "edge_monitor/host_conditions.h"

#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "hypervisor/base/small_file.h"

namespace coalesce {
namespace {

std::optional<std::string> ReadAttribute(const std::filesystem::path& dir, const char* name) {
  absl::StatusOr<std::string> text = ReadSmallFile((dir / name).string(), 256, name);
  if (!text.ok()) return std::nullopt;
  return std::string(absl::StripAsciiWhitespace(*text));
}

}  // namespace

HostConditions ReadHostConditions(const std::string& power_supply_dir) {
  HostConditions now;
  double load[1] = {0};
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (::getloadavg(load, 1) == 1 && cpus > 0) now.load_per_cpu = load[0] / static_cast<double>(cpus);
  std::error_code ec;
  std::vector<std::filesystem::path> supplies;
  for (const auto& entry : std::filesystem::directory_iterator(power_supply_dir, ec)) supplies.push_back(entry.path());
  std::sort(supplies.begin(), supplies.end());  // the same battery every time on a host with two
  for (const auto& dir : supplies) {
    if (ReadAttribute(dir, "type") != "Battery") continue;
    const std::optional<std::string> capacity = ReadAttribute(dir, "capacity");
    uint32_t percent = 0;
    if (!capacity || std::from_chars(capacity->data(), capacity->data() + capacity->size(), percent).ec != std::errc() ||
        percent > 100) {
      continue;  // a battery that does not report its charge decides nothing
    }
    now.battery = BatteryState{percent, ReadAttribute(dir, "status") == "Discharging"};
    break;
  }
  return now;
}

absl::Status CheckHostConditions(const HostConditions& now, const HostLimits& agent_limits, double user_max_load) {
  std::vector<std::string> why;
  if (agent_limits.max_load_per_cpu && now.load_per_cpu > *agent_limits.max_load_per_cpu) {
    why.push_back(absl::StrFormat("load %.2f per CPU is over this agent's limit %.2f (--max-load)", now.load_per_cpu,
                                  *agent_limits.max_load_per_cpu));
  }
  if (user_max_load > 0 && now.load_per_cpu > user_max_load) {
    why.push_back(absl::StrFormat("load %.2f per CPU is over the home user's limit %.2f (policies.max_edge_load)",
                                  now.load_per_cpu, user_max_load));
  }
  if (agent_limits.min_battery_percent && now.battery && now.battery->discharging &&
      now.battery->percent < *agent_limits.min_battery_percent) {
    why.push_back(absl::StrFormat("on battery at %u%%, under this agent's limit %u%% (--min-battery)",
                                  now.battery->percent, *agent_limits.min_battery_percent));
  }
  if (why.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("lease refused: ", absl::StrJoin(why, "; ")));
}

}  // namespace coalesce
