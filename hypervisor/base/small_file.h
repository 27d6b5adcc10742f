// Whole small files in and out: profiles, certificates, keys. Errors name the file and what it is.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
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

// Replaces `path` (or creates it) with `content` and `mode` in one step: written to a new file beside it, then
// renamed over it, so a reader sees the old bytes or the new ones, never a mix (certificates and CRLs that
// running processes reload).
absl::Status ReplaceFile(const std::string& path, std::string_view content, mode_t mode);

// Whether a file changed since it was last seen: its identity and size and modification time.
struct FileStamp {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = -1;
  int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};
// The stamp of `path`; a default (never equal to a real file's) when it cannot be read.
FileStamp StampOf(const std::string& path);

}  // namespace coalesce
