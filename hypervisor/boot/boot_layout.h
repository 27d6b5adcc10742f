// Where the loaders put their boot-time structures in guest-physical memory. All of it is below 640 KiB, in
// RAM the e820 map reports as usable: the guest kernel copies what it needs (zero page, command line,
// Multiboot info) before it reuses that memory, and replaces the GDT and page tables early.
//
//   0x00500  GDT (null, null, __BOOT_CS 0x10, __BOOT_DS 0x18)
//   0x07000  Linux zero page (struct boot_params)
//   0x08000  boot stack, grows down from 0x9000
//   0x09000  identity-mapping page tables: PML4, PDPT, 4 page directories (2 MiB pages, first 4 GiB)
//   0x10000  Multiboot info area (info structure, memory map, module list, strings)
//   0x20000  kernel command line
//   0x30000  end: kernel images must not overlap [kBootDataStart, kBootDataEnd)
//   0xE0000  ACPI tables (the RSDP first), reserved in e820 together with the EBDA and BIOS area
#pragma once

#include <cstdint>

namespace coalesce::boot_layout {

inline constexpr uint64_t kBootDataStart = 0x500;
inline constexpr uint64_t kGdtAddr = 0x500;
inline constexpr uint64_t kZeroPageAddr = 0x7000;
inline constexpr uint64_t kStackTop = 0x9000;
inline constexpr uint64_t kPageTablesAddr = 0x9000;
inline constexpr uint64_t kPageTablesSize = 6 * 4096;  // PML4 + PDPT + 4 PDs
inline constexpr uint64_t kMultibootInfoAddr = 0x10000;
inline constexpr uint64_t kMultibootInfoSize = 0x10000;
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;  // including the NUL
inline constexpr uint64_t kBootDataEnd = 0x30000;

inline constexpr uint64_t kAcpiTablesAddr = 0xE0000;  // = platform::kBiosRomStart
inline constexpr uint64_t kAcpiTablesEnd = 0x100000;

// Segment selectors in our GDT; Linux's 64-bit boot protocol requires exactly these two.
inline constexpr uint16_t kCodeSelector = 0x10;
inline constexpr uint16_t kDataSelector = 0x18;

// The Linux protected-mode kernel's default load address (setup header code32_start).
inline constexpr uint64_t kHighLoadAddr = 0x100000;

static_assert(kPageTablesAddr + kPageTablesSize <= kMultibootInfoAddr);
static_assert(kMultibootInfoAddr + kMultibootInfoSize <= kCmdlineAddr);
static_assert(kCmdlineAddr + kCmdlineMax <= kBootDataEnd);

}  // namespace coalesce::boot_layout
