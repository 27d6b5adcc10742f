// Memory sizes as users write them: plain bytes ("1048576") or a binary suffix K/M/G/T ("512M", "2G", "64k").
// Shared by the profile and the CLI flags (--memory, --capacity memory=SIZE).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace coalesce {

// `what` names the value in errors: ParseSize("abc", "memory") -> "memory: 'abc' is not a size (...)".
// Suffixes are powers of 1024, case-insensitive, with an optional trailing "B" or "iB" ("2GiB", "512MB").
// Zero is accepted here; callers that need a positive size check for it.
absl::StatusOr<uint64_t> ParseSize(std::string_view text, std::string_view what = "size");

// The shortest exact spelling: 536870912 -> "512M", 1000 -> "1000".
std::string FormatSize(uint64_t bytes);

// The home's memory allowance (--home-memory, profile home.memory, ctl home-memory), the one rule for all three:
// whole 4 KiB pages and at least 16 MiB (a guest's own minimum). The error reads "<what>: '<text>' must be ...".
absl::Status CheckHomeAllowance(uint64_t bytes, std::string_view what, std::string_view text);

}  // namespace coalesce
