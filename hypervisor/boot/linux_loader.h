// Loads a Linux bzImage with the 64-bit boot protocol (Documentation/arch/x86/boot.rst, "64-bit Boot
// Protocol"): the protected-mode kernel at pref_address (relocatable kernels) or 1 MiB, a zero page with
// the e820 map, command line and initrd, a flat GDT with __BOOT_CS/__BOOT_DS, identity page tables over the
// first 4 GiB, and entry at startup_64 (load address + 0x200) with RSI = zero page.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/boot/boot_entry.h"
#include "hypervisor/boot/e820_map.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

struct LinuxBootOptions {
  std::string cmdline;
  std::span<const uint8_t> initrd;   // empty: no initrd
  std::vector<E820Entry> e820;       // the machine's memory map (E820Map::Entries())
  uint64_t acpi_rsdp_addr = 0;       // boot_params.acpi_rsdp_addr; 0 lets the kernel scan 0xE0000-0xFFFFF
};

struct LinuxLoadResult {
  BootEntry entry;
  uint64_t kernel_addr = 0;      // where the protected-mode kernel was copied
  uint64_t kernel_extent_end = 0;  // end of the memory the kernel needs while decompressing (init_size)
  uint64_t initrd_addr = 0;
  uint64_t initrd_size = 0;
};

// Errors: those of ParseBzImageHeader(); InvalidArgument for a command line longer than the kernel's
// cmdline_size or than our buffer, or containing a NUL; ResourceExhausted when guest RAM is too small for
// the kernel or the initrd, or the e820 map has more entries than the zero page holds.
absl::StatusOr<LinuxLoadResult> LoadLinux(GuestMemory& mem, std::span<const uint8_t> image,
                                          const LinuxBootOptions& options);

}  // namespace coalesce
