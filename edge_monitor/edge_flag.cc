#include "edge_monitor/edge_flag.h"

#include "absl/strings/str_cat.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/vcpu_list.h"

namespace coalesce {

absl::StatusOr<EdgePlacement> ParseEdgeFlag(std::string_view text) {
  const std::string prefix = absl::StrCat("--edge '", std::string(text), "': ");
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "expected ADDR=LIST, e.g. 127.0.0.1:7001=2,3"));
  }
  EdgePlacement out;
  out.address = std::string(text.substr(0, eq));
  if (auto hp = ParseHostPort(out.address); !hp.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, hp.status().message()));
  }
  auto ids = ParseVcpuList(text.substr(eq + 1));
  if (!ids.ok()) return absl::InvalidArgumentError(absl::StrCat(prefix, ids.status().message()));
  out.vcpus = *std::move(ids);
  return out;
}

}  // namespace coalesce
