#include "edge_monitor/runtime_cgroup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/small_file.h"

namespace coalesce {
namespace {

absl::Status WriteControl(const std::string& file, const std::string& text) {
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("open ", file));
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return ErrnoStatus(absl::StrCat("write '", text, "' to ", file));
  }
  return absl::OkStatus();
}

absl::Status MakeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus(absl::StrCat("mkdir ", dir));
  return absl::OkStatus();
}

// A directory whose children get the cpu and memory controllers.
absl::Status DelegateControllers(const std::string& dir) {
  return WriteControl(dir + "/cgroup.subtree_control", "+cpu +memory");
}

}  // namespace

VmCgroup::~VmCgroup() {
  dir_.Reset();
  if (::rmdir(path_.c_str()) != 0 && errno != ENOENT) {
    LOG_WARN("cannot remove cgroup %s: %s", path_, ErrnoStatus("rmdir").message());
  }
}

absl::StatusOr<std::unique_ptr<RuntimeCgroups>> RuntimeCgroups::Open(const std::string& mount) {
  absl::StatusOr<std::string> controllers = ReadSmallFile(mount + "/cgroup.controllers", 4096, "cgroup.controllers");
  if (!controllers.ok()) {
    return absl::UnavailableError(absl::StrCat("no cgroup v2 hierarchy at ", mount));
  }
  bool cpu = false, memory = false;
  for (absl::string_view c : absl::StrSplit(*controllers, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    cpu |= c == "cpu";
    memory |= c == "memory";
  }
  if (!cpu || !memory) {
    return absl::UnavailableError(absl::StrCat("cgroup v2 at ", mount, " lacks the ", !cpu ? "cpu" : "memory",
                                               " controller"));
  }
  const std::string base = mount + "/coalesce";
  // One directory per RuntimeCgroups (an agent has one; a test process may have several at once).
  static std::atomic<int> instances{0};
  const int instance = instances.fetch_add(1);
  const std::string agent = instance == 0 ? absl::StrCat(base, "/agent-", ::getpid())
                                          : absl::StrCat(base, "/agent-", ::getpid(), "-", instance);
  if (absl::Status st = DelegateControllers(mount); !st.ok()) return absl::UnavailableError(st.message());
  for (const std::string& dir : {base, agent}) {
    if (absl::Status st = MakeDir(dir); !st.ok()) return absl::UnavailableError(st.message());
    if (absl::Status st = DelegateControllers(dir); !st.ok()) return absl::UnavailableError(st.message());
  }
  return std::unique_ptr<RuntimeCgroups>(new RuntimeCgroups(agent));
}

RuntimeCgroups::~RuntimeCgroups() {
  if (::rmdir(path_.c_str()) != 0 && errno != ENOENT) {
    LOG_WARN("cannot remove cgroup %s: %s", path_, ErrnoStatus("rmdir").message());
  }
}

absl::StatusOr<std::unique_ptr<VmCgroup>> RuntimeCgroups::Create(const std::string& vm_id, uint32_t vcpus,
                                                                 uint64_t guest_memory_bytes) const {
  const std::string dir = absl::StrCat(path_, "/vm-", vm_id);
  if (::mkdir(dir.c_str(), 0755) != 0) return ErrnoStatus(absl::StrCat("mkdir ", dir));
  UniqueFd fd(::open(dir.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  auto cgroup = std::make_unique<VmCgroup>(dir, std::move(fd));  // removes the directory on any error below
  if (cgroup->dir_fd() < 0) return ErrnoStatus(absl::StrCat("open ", dir));
  if (absl::Status st =
          WriteControl(dir + "/cpu.max", absl::StrCat((vcpus + 1) * kCpuMaxPeriodUs, " ", kCpuMaxPeriodUs));
      !st.ok()) {
    return st;
  }
  if (absl::Status st = WriteControl(dir + "/memory.max", absl::StrCat(guest_memory_bytes + kRuntimeMemoryOverhead));
      !st.ok()) {
    return st;
  }
  // Without swap accounting (or swap) the file is absent: nothing to forbid then.
  if (::access((dir + "/memory.swap.max").c_str(), F_OK) == 0) {
    if (absl::Status st = WriteControl(dir + "/memory.swap.max", "0"); !st.ok()) return st;
  }
  return cgroup;
}

}  // namespace coalesce
