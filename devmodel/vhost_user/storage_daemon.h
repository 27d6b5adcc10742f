// One qemu-storage-daemon (Debian's qemu-system-common) serving one disk image as a vhost-user-blk export on
// a private UNIX socket: QEMU's block layer (qcow2, raw, caching, locking) does the storage, Coalesce is the
// vhost-user front end. The daemon is a supervised child: its exit is visible through pidfd(), its output
// goes to a log file whose last lines explain a failure, and destruction stops it (SIGTERM, which flushes
// qcow2 metadata; SIGKILL after 5 s) and removes the socket.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "devmodel/vhost_user/disk_spec.h"
#include "hypervisor/base/child_process.h"

namespace coalesce {

class StorageDaemon final {
 public:
  // Checks the image (CheckDiskImage), then starts the daemon with its socket and log in `run_dir`, named
  // disk<index>. Does not wait for the socket: the front end's connect does (see StartupStatus).
  static absl::StatusOr<std::unique_ptr<StorageDaemon>> Start(const DiskSpec& disk, const std::string& run_dir,
                                                              int index);
  ~StorageDaemon();
  StorageDaemon(const StorageDaemon&) = delete;
  StorageDaemon& operator=(const StorageDaemon&) = delete;

  [[nodiscard]] const std::string& socket_path() const { return socket_path_; }
  [[nodiscard]] const DiskSpec& disk() const { return disk_; }
  [[nodiscard]] DiskFormat format() const { return format_; }
  // Readable once the daemon has exited.
  [[nodiscard]] int pidfd() const { return child_.pidfd(); }
  [[nodiscard]] pid_t pid() const { return child_.pid(); }
  // Once the export is up (its socket accepts): holds QEMU's "write not shared" lock byte on the image, so that
  // QEMU tools and guests that would write it are refused while this guest uses it (disk_spec.cc).
  absl::Status DenyOtherWriters();
  // OK while the daemon runs; once it has exited, an error naming the disk, how it ended and the last lines of
  // its log (e.g. qemu's "Failed to get "write" lock"). FailedPrecondition: the image was refused. One thread at
  // a time (the front end's start-up, then its completion thread).
  absl::Status Health();

 private:
  StorageDaemon(DiskSpec disk, DiskFormat format, std::string socket_path, std::string log_path, ChildProcess child)
      : disk_(std::move(disk)),
        format_(format),
        socket_path_(std::move(socket_path)),
        log_path_(std::move(log_path)),
        child_(std::move(child)) {}
  [[nodiscard]] std::string LogTail() const;

  DiskSpec disk_;
  DiskFormat format_;
  std::string socket_path_;
  std::string log_path_;
  ChildProcess child_;
  UniqueFd lock_fd_;  // holds the OFD lock of DenyOtherWriters
  bool exited_ = false;
  int wait_status_ = 0;
};

// The qemu-storage-daemon arguments for `disk` (exposed for tests): a file node, a format node on top, and a
// vhost-user-blk export of it on `socket_path`; read-only disks are exported read-only.
std::vector<std::string> StorageDaemonArgs(const std::string& program, const DiskSpec& disk, DiskFormat format,
                                           const std::string& socket_path);

}  // namespace coalesce
