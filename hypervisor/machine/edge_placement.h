// Where vCPUs run when not at home, and where guest RAM lives beyond the home's allowance: one entry per edge
// agent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace coalesce {

struct EdgePlacementSpec {
  std::string agent_address;   // host:port of `coalesce edge`
  std::vector<uint32_t> vcpus; // global vCPU ids placed there; none for a memory edge
  uint64_t memory_bytes = 0;   // a memory edge: the guest RAM it lends (docs/COALESCENCE.md, "Memory edges")
};

}  // namespace coalesce
