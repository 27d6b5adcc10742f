// Coalescence profiles as a user writes them (edge_monitor/profile_loader.h): the first byte picks text format
// or JSON, the rest is the file. Whatever parses is validated; neither may crash on any file.
#include <string_view>

#include "edge_monitor/profile_loader.h"
#include "edge_monitor/profile_validator.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto format = (data[0] & 1) ? coalesce::ProfileFormat::kJson : coalesce::ProfileFormat::kText;
  std::string_view content(reinterpret_cast<const char*>(data + 1), size - 1);
  auto profile = coalesce::ParseProfile(content, format, "fuzz.profile");
  if (profile.ok()) (void)coalesce::ValidateProfile(*profile);
  return 0;
}
