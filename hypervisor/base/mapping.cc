#include "hypervisor/base/mapping.h"

#include "hypervisor/base/errno_status.h"

namespace coalesce {

absl::StatusOr<Mapping> Mapping::Map(size_t size, int prot, int flags, int fd, off_t offset,
                                     const char* what) {
  void* p = ::mmap(nullptr, size, prot, flags, fd, offset);
  if (p == MAP_FAILED) return ErrnoStatus(what);
  return Mapping(p, size);
}

}  // namespace coalesce
