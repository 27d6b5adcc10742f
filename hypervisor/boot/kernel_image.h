// Reading a kernel, initrd or module file, and telling which boot protocol a kernel speaks.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace coalesce {

enum class KernelFormat {
  kUnknown,
  kLinuxBzImage,  // setup header with "HdrS": LoadLinux()
  kMultiboot,     // Multiboot v1 header in the first 8 KiB: LoadMultiboot()
};

KernelFormat DetectKernelFormat(std::span<const uint8_t> image);
const char* KernelFormatName(KernelFormat format);

// The whole file. Errors name the path; files over `max_size` are refused (a guest image never needs more).
absl::StatusOr<std::vector<uint8_t>> ReadFileBytes(const std::string& path, uint64_t max_size = 4ULL << 30);

}  // namespace coalesce
