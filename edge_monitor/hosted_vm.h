// One VM's vCPUs as hosted on this edge host: what the edge agent needs from a running remote vCPU runtime.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "edge_monitor/runtime_stop_reason.h"

namespace coalesce {

struct HostedVmStatus {
  bool running = false;  // false once the runtime has ended (on its own or stopped)
  bool stopped = false;  // ended because Stop() asked it to
  int exit_code = 0;     // when ended: exit status, or -signal
  std::string detail;    // "running", "exited with status 1", "killed by signal 9 (Killed)", ...
  uint32_t pid = 0;      // the runtime's process, 0 if it is not a process
};

class HostedVm {
 public:
  virtual ~HostedVm() = default;

  // Cheap and non-blocking: the agent calls it under its own lock to count reserved resources.
  virtual HostedVmStatus Status() const = 0;

  // Asks the runtime to end, saying why, waits up to `grace`, then forces it. Returns once it has ended;
  // idempotent.
  virtual void Stop(absl::Duration grace, RuntimeStopReason reason) = 0;
};

}  // namespace coalesce
