// Where vCPUs run when not at home, and where guest RAM lives beyond the home's allowance: one entry per edge
// agent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hypervisor/boot/numa_topology.h"

namespace coalesce {

struct EdgePlacementSpec {
  std::string agent_address;   // host:port of `coalesce edge`
  std::vector<uint32_t> vcpus; // global vCPU ids placed there; none for a memory edge
  uint64_t memory_bytes = 0;   // a memory edge: the guest RAM it lends (docs/COALESCENCE.md, "Memory edges")
};

// The boot RAM each of `edges` names as its guest NUMA domain (MemoryEdgeShares). The machine computes it once,
// for its SRAT and for the home's DSM, which spills a page of a share to that edge first.
inline std::vector<MemoryShare> BootMemoryShares(const std::vector<EdgePlacementSpec>& edges, uint64_t boot_memory,
                                                 uint64_t home_allowance) {
  std::vector<uint64_t> lent;
  for (const EdgePlacementSpec& e : edges) lent.push_back(e.vcpus.empty() ? e.memory_bytes : 0);
  return MemoryEdgeShares(boot_memory, home_allowance, lent);
}

}  // namespace coalesce
