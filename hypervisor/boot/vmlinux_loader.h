// Loads an uncompressed x86-64 Linux kernel (vmlinux, the ELF file a bzImage carries compressed) into guest
// memory, as Firecracker does: every PT_LOAD segment at its physical address p_paddr, its bss part zeroed.
// The entry point is e_entry itself: x86-64's linker script declares ENTRY(phys_startup_64), the physical
// address of startup_64 in arch/x86/kernel/head_64.S. No relocation is applied: the kernel runs at its link
// address (LOAD_PHYSICAL_ADDR), which is what a relocatable kernel does when the decompressor does not
// randomize it.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

struct VmlinuxLoadResult {
  uint64_t entry = 0;        // physical address of startup_64 (e_entry)
  uint64_t lowest = 0;       // lowest loaded physical address
  uint64_t highest_end = 0;  // one past the highest loaded byte, bss included
};

// Errors (InvalidArgument): not an ELF64 x86-64 executable; segments outside the file, outside guest RAM,
// below 1 MiB (our boot structures, the BIOS area and the kernel's own low-memory users) or above 4 GiB (the
// boot page tables map only the first 4 GiB); e_entry outside the loaded segments. Guest memory is written
// only when every segment is valid.
absl::StatusOr<VmlinuxLoadResult> LoadVmlinux(GuestMemory& mem, std::span<const uint8_t> elf);

}  // namespace coalesce
