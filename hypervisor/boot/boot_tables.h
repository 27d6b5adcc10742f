// The two CPU tables a loader must provide before a protected- or long-mode entry: a flat GDT and (long
// mode) page tables identity-mapping the first 4 GiB. Written at the fixed addresses of boot_layout.h (the
// Multiboot loader may move its GDT around a kernel that sits there).
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "absl/status/status.h"
#include "hypervisor/boot/boot_entry.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

// Flat 4 GiB descriptors (base 0, limit 0xfffff pages, present, DPL 0).
inline constexpr uint64_t kGdtCode32 = 0x00CF'9B00'0000'FFFFULL;  // execute/read, accessed, D=1
inline constexpr uint64_t kGdtCode64 = 0x00AF'9B00'0000'FFFFULL;  // execute/read, accessed, L=1
inline constexpr uint64_t kGdtData = 0x00CF'9300'0000'FFFFULL;    // read/write, accessed, B=1
inline constexpr uint16_t kBootGdtLimit = 4 * 8 - 1;

// Writes {null, null, code, data} at boot_layout::kGdtAddr (or `gdt_addr`); the code descriptor suits `mode`.
absl::Status WriteBootGdt(GuestMemory& mem, BootCpuMode mode);
absl::Status WriteBootGdtAt(GuestMemory& mem, BootCpuMode mode, uint64_t gdt_addr);

// Writes PML4, PDPT and four page directories at boot_layout::kPageTablesAddr mapping [0, 4 GiB) to itself
// with 2 MiB pages (1 GiB pages would need CPUID pdpe1gb, which not every host offers). Returns the PML4
// address (the CR3 value).
absl::StatusOr<uint64_t> WriteIdentityPageTables(GuestMemory& mem);

// The hidden segment state KVM needs for a selector whose GDT descriptor is `descriptor`: the same values a
// real CPU would load from the table, so a later reload by the guest changes nothing.
kvm_segment SegmentFromDescriptor(uint64_t descriptor, uint16_t selector);

}  // namespace coalesce
