// `coalesce ctl --vm NAME COMMAND`: one command to a running VM over its control socket (status, shutdown).
#pragma once

#include <string>
#include <vector>

namespace coalesce {

// Returns the exit status: 0 answered, 2 bad usage, no such VM or an error reply, 8 the VM did not answer.
int CtlCommand(const std::vector<std::string>& args);

}  // namespace coalesce
