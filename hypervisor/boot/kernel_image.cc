#include "hypervisor/boot/kernel_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_format.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/unique_fd.h"
#include "hypervisor/boot/bzimage_header.h"
#include "hypervisor/boot/multiboot_header.h"

namespace coalesce {

KernelFormat DetectKernelFormat(std::span<const uint8_t> image) {
  if (LooksLikeBzImage(image)) return KernelFormat::kLinuxBzImage;
  if (HasMultibootHeader(image)) return KernelFormat::kMultiboot;
  return KernelFormat::kUnknown;
}

const char* KernelFormatName(KernelFormat format) {
  switch (format) {
    case KernelFormat::kLinuxBzImage:
      return "Linux bzImage";
    case KernelFormat::kMultiboot:
      return "Multiboot";
    case KernelFormat::kUnknown:
      break;
  }
  return "unknown";
}

absl::StatusOr<std::vector<uint8_t>> ReadFileBytes(const std::string& path, uint64_t max_size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus("open " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) return ErrnoStatus("stat " + path);
  if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError(path + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_size) {
    return absl::InvalidArgumentError(absl::StrFormat("%s is %u bytes, more than %u", path, st.st_size, max_size));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read " + path);
    }
    if (n == 0) break;  // the file shrank under us
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

}  // namespace coalesce
