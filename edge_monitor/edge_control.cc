#include "edge_monitor/edge_control.h"

#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace coalesce {

std::string EdgeControlCommand(EdgeAgentService& service, std::string_view line) {
  const std::vector<absl::string_view> words =
      absl::StrSplit(absl::string_view(line.data(), line.size()), ' ', absl::SkipWhitespace());
  if (words.empty()) return "error: empty command (leases, revoke VM_ID)\n";
  const absl::string_view verb = words[0];
  if (verb == "leases") {
    if (words.size() != 1) return "error: leases takes no arguments\n";
    return service.LeasesReport() + "\n";
  }
  if (verb == "revoke") {
    if (words.size() != 2) return "error: revoke takes one argument: the VM id (see `leases`)\n";
    const std::string vm_id(words[1]);
    const absl::Time start = absl::Now();
    absl::StatusOr<pb::VmStatus> ended = service.Revoke(vm_id);
    if (!ended.ok()) return absl::StrFormat("error: revoke: %s\n", ended.status().message());
    return absl::StrFormat("VM %s: lease revoked; its runtime left in %.1f ms (%s)\n", vm_id,
                           absl::ToDoubleMilliseconds(absl::Now() - start), ended->detail());
  }
  return absl::StrFormat("error: unknown command '%s' (leases, revoke VM_ID)\n", verb);
}

}  // namespace coalesce
