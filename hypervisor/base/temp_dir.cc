#include "hypervisor/base/temp_dir.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/errno_status.h"

namespace coalesce {

absl::StatusOr<TempDir> TempDir::Create(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/", prefix, "XXXXXX");
  if (::mkdtemp(templ.data()) == nullptr) return ErrnoStatus(absl::StrCat("mkdtemp ", templ));
  return TempDir(std::move(templ));
}

TempDir::~TempDir() { Remove(); }

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    Remove();
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

void TempDir::Remove() {
  if (path_.empty()) return;
  if (DIR* d = ::opendir(path_.c_str())) {
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    for (const std::string& n : names) ::unlink(absl::StrCat(path_, "/", n).c_str());
  }
  ::rmdir(path_.c_str());
  path_.clear();
}

}  // namespace coalesce
