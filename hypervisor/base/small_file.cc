#include "hypervisor/base/small_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes, std::string_view what) {
  const std::string name = absl::StrCat(std::string(what), " ", path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat(name, ": open"));
  std::string content;
  char buffer[16384];
  while (true) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat(name, ": read"));
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
    if (content.size() > max_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": larger than ", max_bytes, " bytes; not a ", std::string(what)));
    }
  }
  return content;
}

namespace {

absl::Status WriteAll(int fd, const std::string& path, std::string_view content) {
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat(path, ": write"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteNewFile(const std::string& path, std::string_view content, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) {
    if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrCat(path, ": exists; not overwritten"));
    return ErrnoStatus(absl::StrCat(path, ": create"));
  }
  return WriteAll(fd.get(), path, content);
}

absl::Status ReplaceFile(const std::string& path, std::string_view content, mode_t mode) {
  const std::string temporary = absl::StrCat(path, ".new-", ::getpid());
  ::unlink(temporary.c_str());  // a leftover of a writer that died
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat(temporary, ": create"));
  absl::Status written = WriteAll(fd.get(), temporary, content);
  if (written.ok() && ::fsync(fd.get()) != 0) written = ErrnoStatus(absl::StrCat(temporary, ": fsync"));
  if (written.ok() && ::rename(temporary.c_str(), path.c_str()) != 0) {
    written = ErrnoStatus(absl::StrCat("rename ", temporary, " to ", path));
  }
  if (!written.ok()) ::unlink(temporary.c_str());
  return written;
}

FileStamp StampOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return FileStamp{};
  return FileStamp{st.st_dev, st.st_ino, st.st_size,
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

}  // namespace coalesce
