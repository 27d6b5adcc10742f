// Why the edge agent stops a VM's runtime: the agent sends it with the SIGTERM (a queued signal's value,
// pidfd_send_signal with SI_QUEUE), and the runtime passes the words on to the home in its Leaving message, so
// the home's departure report says why the edge went (docs/COALESCENCE.md, "Departure"). A plain SIGTERM
// (kill(1), an older agent) carries no value: kUnspecified.
#pragma once

#include <string>

namespace coalesce {

enum class RuntimeStopReason : int {
  kUnspecified = 0,
  kAgentShutdown = 1,  // the agent got SIGINT/SIGTERM: every hosted VM leaves
  kStopRequested = 2,  // StopVm: the home (or a tool) asked for this VM to stop here
  kLeaseRevoked = 3,   // the edge's operator revoked the lease (`coalesce ctl revoke`)
  kLeaseExpired = 4,   // the home did not renew the lease in time
  kAbandoned = 5,      // the runtime started for a request the agent could not complete
};

// Words for the reason carried as `value`, for the departure report: "the edge agent is shutting down", ...
// Unknown values (0 included) read "stopped by signal SIGNAL".
std::string DescribeRuntimeStop(int signal, int value);

}  // namespace coalesce
