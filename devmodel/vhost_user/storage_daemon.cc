#include "devmodel/vhost_user/storage_daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {
namespace {

constexpr char kProgram[] = "qemu-storage-daemon";

// QEMU's key=value option syntax doubles a comma inside a value.
std::string EscapeOptionValue(const std::string& v) { return absl::StrReplaceAll(v, {{",", ",,"}}); }

absl::StatusOr<std::string> FindInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::FailedPreconditionError(
      absl::StrFormat("%s not found in PATH: install qemu-system-common (scripts/setup.sh)", name));
}

}  // namespace

std::vector<std::string> StorageDaemonArgs(const std::string& program, const DiskSpec& disk, DiskFormat format,
                                           const std::string& socket_path) {
  const std::string ro = disk.readonly ? "on" : "off";
  return {
      program,
      "--blockdev",
      absl::StrCat("driver=file,node-name=file0,filename=", EscapeOptionValue(disk.path), ",read-only=", ro),
      "--blockdev",
      absl::StrCat("driver=", DiskFormatName(format), ",node-name=disk0,file=file0,read-only=", ro),
      "--export",
      absl::StrCat("type=vhost-user-blk,id=export0,node-name=disk0,addr.type=unix,addr.path=",
                   EscapeOptionValue(socket_path), ",writable=", disk.readonly ? "off" : "on"),
  };
}

absl::StatusOr<std::unique_ptr<StorageDaemon>> StorageDaemon::Start(const DiskSpec& disk, const std::string& run_dir,
                                                                    int index) {
  ASSIGN_OR_RETURN(DiskFormat format, CheckDiskImage(disk));
  if (disk.format == DiskFormat::kAuto && format == DiskFormat::kRaw && !disk.readonly) {
    LOG_WARN("disk %s: no format given and no qcow2 header: using it as raw (add format=raw to say so)", disk.path);
  }
  ASSIGN_OR_RETURN(std::string program, FindInPath(kProgram));
  std::string socket_path = absl::StrFormat("%s/disk%d.sock", run_dir, index);
  std::string log_path = absl::StrFormat("%s/disk%d.log", run_dir, index);
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!log.valid()) return ErrnoStatus(absl::StrCat("disk log ", log_path));
  ChildProcess::Options opts;
  opts.argv = StorageDaemonArgs(program, disk, format, socket_path);
  opts.output_fd = log.get();
  // Machines are built on the main thread, which lives as long as they do: if coalesce dies, so does the daemon.
  opts.die_with_spawning_thread = true;
  LOG_DEBUG("disk %s: %s", disk.path, absl::StrJoin(opts.argv, " "));
  ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::Spawn(opts));
  return std::unique_ptr<StorageDaemon>(
      new StorageDaemon(disk, format, std::move(socket_path), std::move(log_path), std::move(child)));
}

StorageDaemon::~StorageDaemon() {
  if (!exited_ && child_.valid()) {
    // SIGTERM: the daemon drains its exports and closes the image, writing back qcow2's cached metadata.
    (void)child_.Signal(SIGTERM);
    pollfd p{child_.pidfd(), POLLIN, 0};
    if (p.fd < 0 || ::poll(&p, 1, 5000) != 1) {
      LOG_WARN("disk %s: qemu-storage-daemon did not stop within 5 s of SIGTERM: killing it", disk_.path);
      (void)child_.Signal(SIGKILL);
    }
    (void)child_.Wait();
  }
  ::unlink(socket_path_.c_str());
  ::unlink(log_path_.c_str());
}

absl::Status StorageDaemon::DenyOtherWriters() {
  // QEMU's lock bytes (block/file-posix.c): 200 + i read-locked = "permission i is not shared"; WRITE is bit 1.
  constexpr off_t kQemuUnsharedWriteByte = 200 + 1;
  lock_fd_.Reset(::open(disk_.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!lock_fd_.valid()) return ErrnoStatus(absl::StrFormat("disk %s: open for locking", disk_.path));
  struct flock lock = {};
  lock.l_type = F_RDLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = kQemuUnsharedWriteByte;
  lock.l_len = 1;
  if (::fcntl(lock_fd_.get(), F_OFD_SETLK, &lock) != 0) {
    return absl::FailedPreconditionError(
        ErrnoStatus(absl::StrFormat("disk %s: locked: another process holds it", disk_.path)).message());
  }
  return absl::OkStatus();
}

std::string StorageDaemon::LogTail() const {
  std::ifstream in(log_path_);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.size() > 3) lines.erase(lines.begin(), lines.end() - 3);
  return lines.empty() ? "no output" : absl::StrJoin(lines, " / ");
}

absl::Status StorageDaemon::Health() {
  if (!exited_) {
    pollfd p{child_.pidfd(), POLLIN, 0};
    if (p.fd < 0 || ::poll(&p, 1, 0) != 1) return absl::OkStatus();
    absl::StatusOr<int> st = child_.Wait();
    exited_ = true;
    wait_status_ = st.ok() ? *st : 0;
  }
  return absl::FailedPreconditionError(absl::StrFormat("disk %s: qemu-storage-daemon %s: %s", disk_.path,
                                                       DescribeWaitStatus(wait_status_), LogTail()));
}

}  // namespace coalesce
