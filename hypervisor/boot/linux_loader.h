// Loads a Linux bzImage with the 64-bit boot protocol (Documentation/arch/x86/boot.rst, "64-bit Boot
// Protocol"): a zero page with the e820 map, command line and initrd, a flat GDT with __BOOT_CS/__BOOT_DS,
// identity page tables over the first 4 GiB, RSI = zero page, and one of two kernels:
//  - by default, when the compressed payload is in a format we can decompress (kernel_payload.h), the kernel
//    proper: the payload is decompressed on the host and its vmlinux ELF loaded at its physical addresses,
//    entered at startup_64 of arch/x86/kernel/head_64.S (vmlinux_loader.h). No in-guest decompression, no
//    KASLR: the kernel runs at its link address.
//  - otherwise (or with decompress_on_host = false) the protected-mode code as the file has it, at
//    pref_address (relocatable kernels) or 1 MiB, entered at the decompressor's startup_64 (load + 0x200).
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
  // Decompress the payload on the host and enter vmlinux directly (see above). Payloads in formats we do not
  // decompress (bzip2, lzma, lzo, unknown) still boot through the in-guest decompressor; a payload in a
  // format we do decompress that turns out corrupt is an error, never a silent fallback.
  bool decompress_on_host = true;
};

struct LinuxLoadResult {
  BootEntry entry;
  bool decompressed_on_host = false;  // true: vmlinux was loaded and entry.rip is its startup_64
  uint64_t kernel_addr = 0;      // where the protected-mode kernel (or vmlinux's lowest segment) was copied
  // End of the memory the kernel may use from its load address: max(pref_address + init_size, end of the
  // loaded vmlinux incl. bss). Nothing else (the initrd) is placed below it.
  uint64_t kernel_extent_end = 0;
  uint64_t initrd_addr = 0;
  uint64_t initrd_size = 0;
};

// Errors: those of ParseBzImageHeader(); InvalidArgument for a command line longer than the kernel's
// cmdline_size or than our buffer, or containing a NUL; ResourceExhausted when guest RAM is too small for
// the kernel or the initrd, or the e820 map has more entries than the zero page holds. With
// decompress_on_host: those of ExtractKernelPayload(), Decompress() and LoadVmlinux().
absl::StatusOr<LinuxLoadResult> LoadLinux(GuestMemory& mem, std::span<const uint8_t> image,
                                          const LinuxBootOptions& options);

}  // namespace coalesce
