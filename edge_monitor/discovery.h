// Finding edges for a VM from a list of candidate agents (`coalesce run --discover ADDR,...`): each is asked
// for its capacity and state (GetCapacity: free vCPUs, load, battery), the answer's time is the candidate's
// control-plane round trip, and the vCPUs to lend are placed on the candidates the user's policy accepts,
// nearest first. Every candidate passed over is named with the reason. The lease itself is then asked for as
// with --edge (HostVcpus, where the agent applies its own limits), and the data-plane round trip is measured
// and checked again before the guest runs (docs/COALESCENCE.md, "Discovery").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coalesce/edge_agent.pb.h"
#include "edge_monitor/edge_agent_client.h"

namespace coalesce {

struct EdgeCandidate {
  std::string address;
  absl::Status reachable;  // OK, or why GetCapacity failed
  pb::Capacity capacity;   // when reachable
  absl::Duration rtt;      // GetCapacity's round trip, connection set-up excluded
};

struct DiscoveryPolicy {
  absl::Duration latency_bound = absl::InfiniteDuration();  // policies.latency_bound_us
  double max_edge_load = 0;                                 // policies.max_edge_load per CPU (0: none)
  uint32_t max_edge_vcpus = 0;                              // policies.max_edge_vcpus (0: none)
  uint64_t guest_memory = 0;                                // every edge must have this much free
};

struct DiscoveredEdge {
  std::string address;
  std::vector<uint32_t> vcpus;
};

// Asks every candidate at once, each within `timeout` (connection included).
std::vector<EdgeCandidate> QueryCandidates(const std::vector<std::string>& addresses,
                                           const EdgeAgentClientOptions& options, absl::Duration timeout);

// Places `vcpus` on the acceptable candidates, nearest first, each up to its free vCPUs and the policy's cap.
// FailedPrecondition if they do not fit, listing each candidate and why it was passed over or how many it took.
absl::StatusOr<std::vector<DiscoveredEdge>> PlanPlacement(const std::vector<EdgeCandidate>& candidates,
                                                          const std::vector<uint32_t>& vcpus,
                                                          const DiscoveryPolicy& policy);

// One line per candidate for the user: its figures and what it was given (or why not).
std::string DescribeCandidates(const std::vector<EdgeCandidate>& candidates, const std::vector<DiscoveredEdge>& plan,
                               const DiscoveryPolicy& policy);

}  // namespace coalesce
