// Confinement of the remote vCPU runtime on an edge host, applied once the node is built (KVM, vCPUs,
// userfaultfd and the data plane are open) and before any guest code runs, so that a runtime taken over through
// a bug (a hostile peer or guest) holds as little of the host as possible:
//   - its own IPC namespace and a private mount namespace;
//   - no core dumps, no ptrace attach by others (not dumpable), guest memory excluded from dumps;
//   - when started as root: the unprivileged user nobody (65534) and no capabilities at all (bounding set too);
//     started as root of a user namespace of its own (the edge agent's way, ChildProcess::Options), it is
//     unprivileged on the host already and keeps its ids, and its capabilities there are cleared the same way;
//   - no_new_privs, then a seccomp filter (libseccomp) allowing only the system calls the runtime makes; any
//     other kills the whole process (SIGSYS), which its agent reports.
// docs/SECURITY.md lists what this covers.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace coalesce {

struct SandboxOptions {
  bool drop_to_nobody = true;  // only applies when running as root
  // Memory never to appear in a core dump (guest RAM). MADV_DONTDUMP is advisory: dumps are also off.
  std::vector<std::pair<void*, size_t>> private_memory;
};

// Who the process is on the host, from /proc/self/uid_map.
struct HostIdentity {
  uid_t uid = 0;       // in its own user namespace
  uid_t host_uid = 0;  // the same uid, seen from the initial user namespace
  bool own_user_namespace = false;
};

// Applies everything above to the whole process (every thread: the seccomp filter is synchronized across
// threads). Irreversible. An error names the step that failed; the caller must not run the guest then. Returns
// who the process is once confined.
absl::StatusOr<HostIdentity> ConfineRuntime(const SandboxOptions& options);

// The system calls the filter allows, by name (for the docs and the test).
const std::vector<std::string>& RuntimeAllowedSyscalls();

// The ioctl requests it allows: those with (request & mask) == value.
struct IoctlAllowance {
  const char* what;
  uint64_t mask;
  uint64_t value;
};
const std::vector<IoctlAllowance>& RuntimeAllowedIoctls();

}  // namespace coalesce
