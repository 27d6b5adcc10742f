// Helpers for profile tests: files in a per-test temporary directory.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace coalesce {

class TempDir final {
 public:
  TempDir() {
    char pattern[] = "/tmp/coalesce-profile-test-XXXXXX";
    const char* dir = ::mkdtemp(pattern);
    path_ = dir != nullptr ? dir : "/tmp";
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // World-writable (sticky, as /tmp): for a runtime the agent starts as nobody in its own user namespace, which
  // it does when it runs as root on a host with /dev/kvm.
  void OpenToEveryone() const {
    std::error_code ignored;
    std::filesystem::permissions(path_, std::filesystem::perms::all | std::filesystem::perms::sticky_bit, ignored);
  }

  // Writes `content` to <dir>/<name> and returns its path.
  std::string Write(const std::string& name, const std::string& content) const {
    const std::string file = path_ + "/" + name;
    std::ofstream(file) << content;
    return file;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace coalesce
