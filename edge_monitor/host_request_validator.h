// Checks a HostVcpus request from the network before the agent acts on it. Everything a home node sends is
// untrusted: a malformed request is refused with a message naming the field, never acted on.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "coalesce/edge_agent.pb.h"

namespace coalesce {

// The size of HostVcpusRequest.data_plane_key (dsm::kDataPlaneSecretSize; the runtime checks that they agree).
inline constexpr size_t kDataPlaneKeyBytes = 32;

// InvalidArgument naming the first bad field:
//  vm_id 1..64 chars of [A-Za-z0-9._-] (it ends up in argv and logs); guest_memory_bytes > 0, a multiple of 4K;
//  guest_vcpu_count 1..255; vcpu_ids non-empty, distinct, each < guest_vcpu_count; home_data_plane_address host:port;
//  node_id 0..63 (0 means 1); data_plane_key exactly kDataPlaneKeyBytes.
absl::Status ValidateHostRequest(const pb::HostVcpusRequest& request);

// What a hosted VM may come to hold on the edge: a node running vCPUs maps all of guest RAM through the DSM (at
// worst every page ends up there); a memory node (no vCPU ids) holds at most what it lends. The agent counts it
// against its capacity and caps the runtime's cgroup with it.
uint64_t MemoryHeld(const pb::HostVcpusRequest& request);

// The same rule for vm_id alone (StopVm, GetVmState).
absl::Status ValidateVmId(const std::string& vm_id);

}  // namespace coalesce
