// cgroup v2 limits for the remote vCPU runtimes an edge agent starts. Each VM's runtime lives in its own cgroup,
// <mount>/coalesce/agent-<agent pid>/vm-<vm id>, made before the runtime and entered at its creation
// (CLONE_INTO_CGROUP, see ChildProcess::Options), so a runtime is never outside its limits:
//   cpu.max         one host CPU per vCPU the VM runs here, plus one for the runtime's service threads (the DSM's
//                   receivers and fault handler, timers), which must not wait behind throttled vCPUs;
//   memory.max      the guest memory plus kRuntimeMemoryOverhead (page tables, DSM buffers, KVM's own state);
//   memory.swap.max 0: guest pages are never written to swap.
// Where the host has no cgroup v2 with the cpu and memory controllers (or the agent may not write it), Open says
// why and the agent runs runtimes without these limits, saying so once at start.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {

inline constexpr uint64_t kRuntimeMemoryOverhead = 256ull << 20;
inline constexpr uint64_t kCpuMaxPeriodUs = 100000;

// One VM's cgroup. Removed when destroyed, which the owner does after the runtime has exited.
class VmCgroup final {
 public:
  VmCgroup(std::string path, UniqueFd dir) : path_(std::move(path)), dir_(std::move(dir)) {}
  ~VmCgroup();
  VmCgroup(const VmCgroup&) = delete;
  VmCgroup& operator=(const VmCgroup&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }
  // An O_DIRECTORY fd of the cgroup, for CLONE_INTO_CGROUP.
  [[nodiscard]] int dir_fd() const { return dir_.get(); }

 private:
  std::string path_;
  UniqueFd dir_;
};

class RuntimeCgroups final {
 public:
  // Prepares <mount>/coalesce/agent-<pid> with the cpu and memory controllers enabled for its children.
  // Unavailable, with the reason, where that cannot be done.
  static absl::StatusOr<std::unique_ptr<RuntimeCgroups>> Open(const std::string& mount = "/sys/fs/cgroup");
  ~RuntimeCgroups();  // removes the agent's directory (its VMs' are gone by then)
  RuntimeCgroups(const RuntimeCgroups&) = delete;
  RuntimeCgroups& operator=(const RuntimeCgroups&) = delete;

  // The cgroup for `vm_id` (a validated VM id) with its limits written.
  absl::StatusOr<std::unique_ptr<VmCgroup>> Create(const std::string& vm_id, uint32_t vcpus,
                                                   uint64_t guest_memory_bytes) const;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  explicit RuntimeCgroups(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace coalesce
