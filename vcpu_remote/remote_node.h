// The remote vCPU runtime: what an edge agent starts (`coalesce remote-node ...`, argv contract in
// edge_monitor/remote_node_args.h) for the vCPUs of one VM placed on its host. It is a node runtime like the
// home's, without the platform: a KVM VM holding the whole guest-physical map through the DSM (every page
// Invalid at start), only the placed vCPUs (created with their global ids = APIC ids, each with its own local
// APIC, all waiting for INIT/SIPI from the guest), I/O forwarded to the home node and interrupts routed
// between nodes.
#pragma once

#include <string>
#include <vector>

namespace coalesce {

// Runs the runtime with the flags after "remote-node"; returns the process exit status.
int RunRemoteNodeMain(const std::vector<std::string>& args);

}  // namespace coalesce
