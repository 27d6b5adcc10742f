// `coalesce daemon`: flags, then the libvirt-protocol server until SIGINT or SIGTERM. Guests it started keep
// running when it stops; the next daemon on the same state directory finds them again.
#pragma once

#include <string>
#include <vector>

namespace coalesce::daemon {

extern const char kDaemonUsage[];
int RunDaemonMain(const std::vector<std::string>& args);

}  // namespace coalesce::daemon
