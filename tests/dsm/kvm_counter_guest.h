// The KVM half of the two-VM DSM test: a VM with one vCPU whose guest RAM (GuestMemory's memfd, the KVM memslot)
// is served by a DsmNode, running a tiny 16-bit real-mode guest that increments a counter under a spinlock built
// on xchg. Only the home node (0) loads the guest; node 1 gets every page, code included, through the DSM.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "dsm/dsm_node.h"

namespace coalesce::dsm::test {

inline constexpr uint64_t kGuestCodeAddr = 0x1000;
inline constexpr uint64_t kGuestLockAddr = 0x2000;
inline constexpr uint64_t kGuestCounterAddr = 0x3000;
inline constexpr uint64_t kGuestIterationsAddr = 0x3008;
inline constexpr uint16_t kGuestDonePort = 0x10;

// In a node process: creates the guest RAM and the DsmNode on it (node 0 loads code and iteration count first).
absl::StatusOr<std::unique_ptr<DsmNode>> CreateGuestNode(int index, const DsmNodeConfig& config,
                                                         uint32_t iterations);
// Creates the VM and vCPU `index` on that RAM and runs the guest to its "done" port write; "ok ..." or "FAIL ...".
std::string RunCounterGuest(int index);

}  // namespace coalesce::dsm::test
