// The CLI's `--edge ADDR=LIST` flag: place vCPUs LIST on the edge agent at ADDR ("127.0.0.1:7001=2,3").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace coalesce {

struct EdgePlacement {
  std::string address;           // As written (validated host:port).
  std::vector<uint32_t> vcpus;   // In written order, distinct.
};

// Errors name the flag: "--edge '127.0.0.1=2': address: '127.0.0.1' is not host:port (missing ':port')".
absl::StatusOr<EdgePlacement> ParseEdgeFlag(std::string_view text);

}  // namespace coalesce
