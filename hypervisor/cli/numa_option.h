// `coalesce run --numa` (and the profile's guest.numa): the guest's NUMA layout as users write it.
//   auto                     one domain per node of a coalesced VM (the default); a flat machine on one node
//   off                      no SRAT or SLIT
//   cpus=0-1[,memory=128M]/cpus=2-3[,memory=128M]/...
//                            explicit domains on one host, in order: each domain's vCPUs and RAM (memory= on
//                            every domain or on none; none: the RAM split evenly in whole MiB, the last domain
//                            taking the rest)
// Pure: unit-tested. docs/NUMA.md.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/boot/numa_topology.h"

namespace coalesce {

struct NumaChoice {
  NumaMode mode = NumaMode::kAuto;
  std::vector<NumaNode> nodes;  // kExplicit only
};

// `what` names the flag or profile field in errors. `memory` is the guest's RAM (for the even split); explicit
// layouts are checked against `vcpu_count` and `memory` (ValidateNumaTopology).
absl::StatusOr<NumaChoice> ParseNumaSpec(std::string_view text, std::string_view what, uint32_t vcpu_count,
                                         uint64_t memory);

}  // namespace coalesce
