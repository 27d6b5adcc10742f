#include "edge_monitor/runtime_stop_reason.h"

#include "absl/strings/str_cat.h"

namespace coalesce {

std::string DescribeRuntimeStop(int signal, int value) {
  switch (static_cast<RuntimeStopReason>(value)) {
    case RuntimeStopReason::kAgentShutdown:
      return "the edge agent is shutting down";
    case RuntimeStopReason::kStopRequested:
      return "the edge agent was asked to stop this VM";
    case RuntimeStopReason::kLeaseRevoked:
      return "the lease was revoked by the edge's operator";
    case RuntimeStopReason::kLeaseExpired:
      return "the lease expired (not renewed in time)";
    case RuntimeStopReason::kAbandoned:
      return "the edge agent abandoned the request";
    case RuntimeStopReason::kUnspecified:
      break;
  }
  return absl::StrCat("stopped by signal ", signal);
}

}  // namespace coalesce
