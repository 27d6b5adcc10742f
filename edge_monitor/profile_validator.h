// The rules of a coalescence profile that its schema cannot express.
#pragma once

#include "absl/status/status.h"
#include "coalesce/profile.pb.h"

namespace coalesce {

// Checks, and reports every problem found (one per line, InvalidArgument):
//  - guest.vcpus is 1..255, guest.memory is a positive size that is a multiple of 4K, guest.kernel is set;
//  - every vCPU id 0..vcpus-1 is placed on exactly one node: ids placed twice name both nodes, ids placed nowhere
//    are listed, ids >= vcpus are named with the node that lists them;
//  - vCPU 0, the boot CPU, runs at home (the home node owns the platform and starts the guest);
//  - each edge has a well-formed, distinct "host:port" address and at least one vCPU;
//  - home.data_plane_address, if set, is host:port; policies are in range.
absl::Status ValidateProfile(const pb::Profile& profile);

// "edge 127.0.0.1:7001" or "edge 'name' (127.0.0.1:7001)": how messages name an edge node.
std::string DescribeEdge(const pb::EdgeNode& edge, int index);

}  // namespace coalesce
