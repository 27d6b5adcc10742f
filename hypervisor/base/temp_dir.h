// A private directory (mode 0700) that exists as long as its owner: sockets and logs of helper processes
// (qemu-storage-daemon) live there. Destruction removes the files left in it, then the directory.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace coalesce {

class TempDir final {
 public:
  // Creates `prefix`XXXXXX under $TMPDIR (default /tmp).
  static absl::StatusOr<TempDir> Create(const std::string& prefix);
  TempDir() = default;
  ~TempDir();
  TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  void Remove();
  std::string path_;
};

}  // namespace coalesce
