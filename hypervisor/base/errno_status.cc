#include "hypervisor/base/errno_status.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace coalesce {

absl::Status ErrnoStatus(std::string_view what, int err) {
  std::string msg = absl::StrCat(std::string(what), ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    case ENOMEM:
    case ENOSPC:
      return absl::ResourceExhaustedError(msg);
    case ETIMEDOUT:
      return absl::DeadlineExceededError(msg);
    case EAGAIN:
    case EINTR:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace coalesce
