// Guest-physical address ranges as users write them, for --home-only-memory and the profile:
//   "START+SIZE[,START+SIZE...]", START in hex (0x...) or decimal bytes, SIZE as in size.h ("4K", "2M"),
//   e.g. "0x1000000+64K,0x2000000+2M". Both page-aligned (4 KiB), sizes non-zero, ranges not overlapping.
// Shared by the CLI, the profile, the edge agent's request check and the remote runtime's flags.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace coalesce {

struct GuestRange {
  uint64_t start = 0;
  uint64_t size = 0;
  [[nodiscard]] uint64_t end() const { return start + size; }
  bool operator==(const GuestRange&) const = default;
};

// Sorted by start. `what` names the value in errors ("--home-only-memory: '0x1001+4K': ...").
absl::StatusOr<std::vector<GuestRange>> ParseGuestRanges(std::string_view text, std::string_view what);
// The inverse: "0x1000000+64K,0x2000000+2M".
std::string FormatGuestRanges(const std::vector<GuestRange>& ranges);

}  // namespace coalesce
