#include "devmodel/vhost_user/disk_spec.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {
namespace {
constexpr off_t kQemuLockWriteByte = 100 + 1;
}  // namespace

const char* DiskFormatName(DiskFormat f) {
  switch (f) {
    case DiskFormat::kAuto: return "auto";
    case DiskFormat::kQcow2: return "qcow2";
    case DiskFormat::kRaw: return "raw";
  }
  return "?";
}

absl::StatusOr<DiskSpec> ParseDiskSpec(std::string_view arg) {
  std::vector<absl::string_view> parts = absl::StrSplit(absl::string_view(arg.data(), arg.size()), ',');
  DiskSpec spec;
  spec.path = std::string(parts[0]);
  if (spec.path.empty()) return absl::InvalidArgumentError(absl::StrFormat("--disk '%s': no file named", arg));
  for (size_t i = 1; i < parts.size(); ++i) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
    if (kv.first == "format") {
      if (kv.second == "qcow2") {
        spec.format = DiskFormat::kQcow2;
      } else if (kv.second == "raw") {
        spec.format = DiskFormat::kRaw;
      } else {
        return absl::InvalidArgumentError(
            absl::StrFormat("--disk %s: format '%s' (qcow2 or raw)", spec.path, kv.second));
      }
    } else if (kv.first == "shadow") {
      if (kv.second != "on" && kv.second != "off") {
        return absl::InvalidArgumentError(absl::StrFormat("--disk %s: shadow '%s' (on or off)", spec.path, kv.second));
      }
      spec.shadow = kv.second == "on";
    } else if (kv.first == "readonly") {
      if (kv.second == "on") {
        spec.readonly = true;
      } else if (kv.second == "off") {
        spec.readonly = false;
      } else {
        return absl::InvalidArgumentError(absl::StrFormat("--disk %s: readonly '%s' (on or off)", spec.path, kv.second));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrFormat("--disk %s: unknown option '%s' (format=, readonly=, shadow=)", spec.path, parts[i]));
    }
  }
  return spec;
}

absl::StatusOr<DiskFormat> CheckDiskImage(const DiskSpec& disk) {
  UniqueFd fd(::open(disk.path.c_str(), (disk.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    absl::Status st = ErrnoStatus(absl::StrFormat("disk %s%s", disk.path, disk.readonly ? "" : " (read-write)"), err);
    if (err == ENOENT) return absl::NotFoundError(st.message());
    if (err == EACCES || err == EPERM || err == EROFS) return absl::FailedPreconditionError(st.message());
    return absl::InvalidArgumentError(st.message());
  }
  // QEMU's image locking (block/file-posix.c): a process using permission bit i holds an OFD read lock on byte
  // 100 + i. qemu-storage-daemon's exports share every permission, so two of them would both write one image:
  // refuse here when anyone holds the WRITE (bit 1) byte. QEMU in turn refuses to write an image we export.
  struct flock probe = {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = kQemuLockWriteByte;
  probe.l_len = 1;
  if (::fcntl(fd.get(), F_OFD_GETLK, &probe) == 0 && probe.l_type != F_UNLCK) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "disk %s: locked: another process (QEMU, or another Coalesce guest) is writing it", disk.path));
  }
  uint8_t magic[4] = {};
  const ssize_t n = ::pread(fd.get(), magic, sizeof(magic), 0);
  if (n < 0) return absl::InvalidArgumentError(ErrnoStatus(absl::StrFormat("disk %s: read", disk.path)).message());
  const bool qcow2 = n == 4 && std::memcmp(magic, "QFI\xfb", 4) == 0;
  switch (disk.format) {
    case DiskFormat::kQcow2:
      if (!qcow2) return absl::InvalidArgumentError(absl::StrFormat("disk %s: not a qcow2 image (format=qcow2)", disk.path));
      return DiskFormat::kQcow2;
    case DiskFormat::kRaw:
      return DiskFormat::kRaw;
    case DiskFormat::kAuto:
      return qcow2 ? DiskFormat::kQcow2 : DiskFormat::kRaw;
  }
  return DiskFormat::kRaw;
}

}  // namespace coalesce
