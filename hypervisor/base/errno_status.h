// Turns errno into an absl::Status whose message names the failed operation.
#pragma once

#include <cerrno>
#include <string_view>

#include "absl/status/status.h"

namespace coalesce {

// Uses the current errno. `what` names the operation, e.g. "KVM_CREATE_VM".
absl::Status ErrnoStatus(std::string_view what, int err = errno);

}  // namespace coalesce
