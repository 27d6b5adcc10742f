// vCPU id lists as users write them on the command line: "2,3", "2-3", "1,3-5".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace coalesce {

// Highest vCPU id a guest may have: the vCPU count is limited to 255 (xAPIC ids, 0xFF is the broadcast id).
inline constexpr uint32_t kMaxVcpuCount = 255;

// Parses a comma-separated list of ids and inclusive ranges. Ids keep their written order; an id given twice,
// a reversed range, an id >= kMaxVcpuCount or an empty item is an error naming the offending item.
absl::StatusOr<std::vector<uint32_t>> ParseVcpuList(std::string_view text);

// The compact form of a list, sorted: {1,3,4,5} -> "1,3-5". Empty list -> "".
std::string FormatVcpuList(std::vector<uint32_t> ids);

}  // namespace coalesce
