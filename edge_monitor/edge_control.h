// The edge agent's control socket: the host's operator (not a home node) asks what is hosted and ends leases,
// with the same one-line protocol as a VM's control socket (hypervisor/base/control_socket.h):
//   coalesce ctl --socket PATH leases        every hosted VM, its state and how long its lease runs
//   coalesce ctl --socket PATH revoke VM_ID  end that VM's lease now: its vCPUs and pages go home, the guest runs on
// The socket is mode 0600, so only this host's administrator reaches it.
#pragma once

#include <string>
#include <string_view>

#include "edge_monitor/edge_agent_service.h"

namespace coalesce {

// The reply to one command line; errors start with "error:" (ctl exits 2 on those).
std::string EdgeControlCommand(EdgeAgentService& service, std::string_view line);

}  // namespace coalesce
