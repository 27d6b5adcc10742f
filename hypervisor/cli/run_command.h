// `coalesce run`: parse flags, build the machine, run it, report.
#pragma once

#include <string>
#include <vector>

namespace coalesce {

// Returns the process exit status (hypervisor/vcpu/exit_status.h).
int RunCommand(const std::vector<std::string>& args);

}  // namespace coalesce
