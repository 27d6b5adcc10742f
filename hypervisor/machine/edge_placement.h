// Where vCPUs run when not at home: one entry per edge agent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace coalesce {

struct EdgePlacementSpec {
  std::string agent_address;   // host:port of `coalesce edge`
  std::vector<uint32_t> vcpus; // global vCPU ids placed there
};

}  // namespace coalesce
