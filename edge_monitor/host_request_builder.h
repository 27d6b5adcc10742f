// Turns one edge of a validated profile into the HostVcpus request the home node sends to that edge's agent.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "coalesce/edge_agent.pb.h"
#include "coalesce/profile.pb.h"

namespace coalesce {

// `profile` must have passed ValidateProfile. `vm_id` names the VM on the agent (see ValidateVmId);
// `home_data_plane_address` is where the home node's data plane accepts the edge's runtime. The result passes
// ValidateHostRequest, or an error says why not.
// `node_id` is the edge's node id in the VM (1..63; 0 leaves it to the agent's default, 1).
absl::StatusOr<pb::HostVcpusRequest> MakeHostVcpusRequest(const pb::Profile& profile, int edge_index,
                                                          const std::string& vm_id,
                                                          const std::string& home_data_plane_address,
                                                          uint32_t node_id = 0);

}  // namespace coalesce
