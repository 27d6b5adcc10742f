#include "edge_monitor/edge_announcement.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace coalesce {

std::vector<std::string> AnnouncementTxt(const pb::Capacity& c, bool tls) {
  constexpr uint64_t kMiB = 1 << 20;
  const uint32_t free_vcpus = c.total_vcpus() - std::min(c.reserved_vcpus(), c.total_vcpus());
  const uint64_t free_memory = c.total_memory_bytes() - std::min(c.reserved_memory_bytes(), c.total_memory_bytes());
  const double load = c.host_cpus() > 0 ? c.load_average_1m() / c.host_cpus() : c.load_average_1m();
  return {
      "txtvers=1",
      absl::StrFormat("vcpus=%u/%u", free_vcpus, c.total_vcpus()),
      absl::StrFormat("memory=%u/%u", free_memory / kMiB, c.total_memory_bytes() / kMiB),
      absl::StrFormat("load=%.2f", load),
      c.has_battery_percent()
          ? absl::StrFormat("battery=%u,%s", c.battery_percent(), c.on_battery() ? "discharging" : "charging")
          : std::string("battery=none"),
      absl::StrFormat("vms=%u", c.running_vms()),
      tls ? "tls=1" : "tls=0",
  };
}

}  // namespace coalesce
