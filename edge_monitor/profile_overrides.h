// Command-line flags layered over a profile (or over an empty one, when no --profile is given).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coalesce/profile.pb.h"
#include "edge_monitor/edge_flag.h"

namespace coalesce {

struct ProfileOverrides {
  std::optional<std::string> kernel;   // --kernel
  std::optional<std::string> initrd;   // --initrd
  std::optional<std::string> cmdline;  // --cmdline
  std::optional<std::string> memory;   // --memory (size string, checked by ValidateProfile)
  std::optional<std::string> max_memory;  // --max-memory (likewise)
  std::optional<uint32_t> vcpus;       // --vcpus
  std::optional<uint32_t> max_vcpus;   // --max-vcpus (applied before vcpus)
  std::vector<EdgePlacement> edges;    // --edge ADDR=LIST, in command-line order
};

// Applies `overrides` to `profile`, in this order:
//  1. kernel, initrd, cmdline, memory replace the profile's values;
//  2. vcpus N: new ids (old count .. N-1) are placed at home; ids >= N are removed from every node (an edge left
//     with no vCPUs is dropped). So an empty profile plus --vcpus 4 puts vCPUs 0-3 at home;
//  3. each --edge ADDR=LIST moves the listed vCPUs to the edge ADDR (added if the profile has none), taking them
//     from home or any other edge; edges left with no vCPUs are dropped.
// Errors: the same vCPU in two --edge flags (names both). The result still needs ValidateProfile.
absl::Status ApplyOverrides(const ProfileOverrides& overrides, pb::Profile* profile);

}  // namespace coalesce
