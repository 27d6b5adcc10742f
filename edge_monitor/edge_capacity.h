// What an edge agent offers to home nodes: vCPUs and guest memory (`--capacity vcpus=N,memory=SIZE`).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace coalesce {

struct EdgeCapacity {
  uint32_t vcpus = 0;
  uint64_t memory_bytes = 0;

  std::string ToString() const;  // "vcpus=4,memory=8G"
};

// The default: the host's online CPUs and its physical memory. Guest memory on an edge is DSM-backed and only the
// pages its vCPUs touch become resident, so the whole guest size counts against this as an upper bound.
EdgeCapacity HostCapacity();

// Parses "vcpus=N,memory=SIZE"; either key may be left out and keeps its value from `defaults`.
absl::StatusOr<EdgeCapacity> ParseCapacityFlag(std::string_view text, const EdgeCapacity& defaults);

}  // namespace coalesce
