// `coalesce discover`: lists the edge agents announced on the local network by DNS-SD (`coalesce edge
// --announce`), with what their TXT records say (free vCPUs and memory, load, battery, TLS).
#pragma once

#include <string>
#include <vector>

namespace coalesce {

// `args` are the flags after "discover". Returns the exit status.
int DiscoverCommand(const std::vector<std::string>& args);

}  // namespace coalesce
