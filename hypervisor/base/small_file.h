// Whole small files in and out: profiles, certificates, keys. Errors name the file and what it is.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace coalesce {

// The file's bytes; InvalidArgument if it is larger than `max_bytes`. `what` starts every error
// ("profile vm.json: open: No such file or directory").
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes, std::string_view what);

// Creates `path` with `mode` and writes `content`; AlreadyExists (naming the file) if it exists: nothing is
// overwritten.
absl::Status WriteNewFile(const std::string& path, std::string_view content, mode_t mode);

}  // namespace coalesce
