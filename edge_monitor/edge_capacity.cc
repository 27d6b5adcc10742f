#include "edge_monitor/edge_capacity.h"

#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "edge_monitor/size.h"

namespace coalesce {

std::string EdgeCapacity::ToString() const { return absl::StrCat("vcpus=", vcpus, ",memory=", FormatSize(memory_bytes)); }

EdgeCapacity HostCapacity() {
  EdgeCapacity capacity;
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  capacity.vcpus = cpus > 0 ? static_cast<uint32_t>(cpus) : 1;
  capacity.memory_bytes = (pages > 0 && page_size > 0) ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) : 0;
  return capacity;
}

absl::StatusOr<EdgeCapacity> ParseCapacityFlag(std::string_view text, const EdgeCapacity& defaults) {
  const std::string prefix = absl::StrCat("--capacity '", std::string(text), "': ");
  EdgeCapacity out = defaults;
  for (absl::string_view item : absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    item = absl::StripAsciiWhitespace(item);
    const size_t eq = item.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, "expected vcpus=N,memory=SIZE"));
    }
    const absl::string_view key = item.substr(0, eq);
    const absl::string_view value = item.substr(eq + 1);
    if (key == "vcpus") {
      if (!absl::SimpleAtoi(value, &out.vcpus) || out.vcpus == 0) {
        return absl::InvalidArgumentError(absl::StrCat(prefix, "vcpus: '", value, "' is not a positive number"));
      }
    } else if (key == "memory") {
      auto size = ParseSize(std::string_view(value.data(), value.size()), "memory");
      if (!size.ok()) return absl::InvalidArgumentError(absl::StrCat(prefix, size.status().message()));
      if (*size == 0) return absl::InvalidArgumentError(absl::StrCat(prefix, "memory: must be larger than 0"));
      out.memory_bytes = *size;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(prefix, "unknown key '", key, "' (known: vcpus, memory)"));
    }
  }
  return out;
}

}  // namespace coalesce
