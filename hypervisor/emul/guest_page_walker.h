// Walks a guest's long-mode page tables (4- or 5-level) in guest RAM for one access: permission checks
// (R/W with CR0.WP, U/S, SMAP) and the accessed/dirty bits the processor would set. KVM_TRANSLATE gives the
// guest-physical address but no permissions (it reports every page writable), so this supplies them.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "hypervisor/emul/guest_cpu.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

struct PagingContext {
  uint64_t cr0 = 0;
  uint64_t cr3 = 0;
  uint64_t cr4 = 0;
  bool rflags_ac = false;  // for SMAP: supervisor data accesses to user pages are allowed while AC = 1
};

struct PageWalk {
  uint64_t gpa = 0;
  std::optional<Fault> fault;
};

// Errors (not faults) when a paging structure is outside guest RAM.
absl::StatusOr<PageWalk> WalkGuestPageTables(const GuestMemory& memory, const PagingContext& paging,
                                             uint64_t linear, MemoryAccess access);

}  // namespace coalesce
