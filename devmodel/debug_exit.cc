#include "devmodel/debug_exit.h"

#include <algorithm>

#include "hypervisor/base/log.h"

namespace coalesce {

void DebugExit::Read(uint64_t /*offset*/, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0); }

void DebugExit::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0) return;
  // At most 4 bytes count: QEMU's port is at most 32 bits wide, and the status is an int.
  const uint64_t value = LoadLe(data.first(std::min<size_t>(data.size(), 4)));
  const uint32_t code = ExitCodeFor(value);
  LOG_INFO("debug-exit: guest wrote %#x, exit code %u", value, code);
  if (on_exit_) on_exit_(code);
}

}  // namespace coalesce
