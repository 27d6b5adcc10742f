// The guest platform's fixed addresses, ports and IRQ numbers, in one place: devices, firmware tables
// (ACPI, e820, Multiboot/Linux boot) and the machine builder all read them from here.
#pragma once

#include <cstdint>

namespace coalesce::platform {

// The x86 base page: the unit in which guest memory is mapped, shared by the DSM (dsm/wire_format.h's kPageSize
// is the same value), checked in profiles and laid out by the loaders.
inline constexpr uint64_t kPageSize = 4096;

// Port I/O.
inline constexpr uint16_t kPicMasterPort = 0x20;   // 2 ports
inline constexpr uint16_t kPicSlavePort = 0xa0;    // 2 ports
inline constexpr uint16_t kPicElcrPort = 0x4d0;    // 2 ports: edge/level control
inline constexpr uint16_t kPitPort = 0x40;         // 4 ports
inline constexpr uint16_t kSystemControlPortB = 0x61;  // PIT channel 2 gate / speaker / status
inline constexpr uint16_t kRtcPort = 0x70;         // 2 ports
inline constexpr uint16_t kDebugExitPort = 0xf4;   // 1 port (isa-debug-exit, QEMU-compatible)
inline constexpr uint16_t kCom1Port = 0x3f8;       // 8 ports
inline constexpr uint16_t kFwCfgPort = 0x510;      // 0x510 selector (16-bit), 0x511 data
inline constexpr uint16_t kResetControlPort = 0xcf9;  // "PCI reset control": write 0x06 resets
// ACPI fixed hardware (PM1a event block, PM1a control block, PM timer), declared in the FADT.
inline constexpr uint16_t kAcpiPm1aEventPort = 0x600;    // 4 bytes: status (2) + enable (2)
inline constexpr uint16_t kAcpiPm1aControlPort = 0x604;  // 2 bytes: SLP_TYP (bits 10-12), SLP_EN (bit 13)
inline constexpr uint16_t kAcpiPmTimerPort = 0x608;      // 4 bytes: 24-bit 3.579545 MHz counter
inline constexpr uint16_t kAcpiSmiCommandPort = 0;       // 0: ACPI is always enabled (hardware-reduced-ish)
inline constexpr uint8_t kAcpiS5SleepType = 5;           // SLP_TYP value the DSDT's \_S5 package names
// The ACPI hotplug controllers (devmodel/hotplug_controller.h), one for CPUs and one for memory slots, read by
// the DSDT's methods: each is three bitmaps of 256 bits, then four write-only id registers and the selected
// slot's proximity domain.
inline constexpr uint16_t kCpuHotplugPort = 0x620;
inline constexpr uint16_t kMemoryHotplugPort = 0x690;
inline constexpr uint16_t kHotplugPresentOffset = 0x00;    // R: bit n = slot n is there (its _STA)
inline constexpr uint16_t kHotplugInsertOffset = 0x20;     // R: bit n = slot n arrived, the guest not told yet
inline constexpr uint16_t kHotplugRemoveOffset = 0x40;     // R: bit n = the VMM asks the guest to give slot n up
inline constexpr uint16_t kHotplugAckInsertOffset = 0x60;  // W: id: the guest took the insert event
inline constexpr uint16_t kHotplugAckRemoveOffset = 0x61;  // W: id: the guest took the remove request
inline constexpr uint16_t kHotplugEjectOffset = 0x62;      // W: id: slot offline in the guest, eject it (_EJ0)
inline constexpr uint16_t kHotplugSelectOffset = 0x63;     // W: id: the slot the domain register reads
inline constexpr uint16_t kHotplugDomainOffset = 0x64;     // R: the selected slot's proximity domain (its _PXM)
inline constexpr uint16_t kHotplugSize = 0x65;
inline constexpr uint32_t kHotplugMaxSlots = 256;
static_assert(kCpuHotplugPort + kHotplugSize <= kMemoryHotplugPort);
// Hot-pluggable guest RAM (coalesce run --max-memory): slots of 128 MiB, Linux's memory block size on x86-64
// (for guests under 64 GiB), from a 1 GiB-aligned base above the boot RAM.
inline constexpr uint64_t kMemoryHotplugSlotSize = 128ULL << 20;
inline constexpr uint64_t kMemoryHotplugAlign = 1ULL << 30;

// Legacy IRQ lines (ISA IRQ = IOAPIC GSI, except IRQ0 -> GSI 2 via the MADT override).
inline constexpr uint32_t kPitIrq = 0;
inline constexpr uint32_t kCom1Irq = 4;
inline constexpr uint32_t kRtcIrq = 8;
inline constexpr uint32_t kAcpiSciIrq = 9;  // level, active high (MADT override)
inline constexpr uint32_t kHotplugIrq = 5;  // the DSDT's Generic Event Device (ACPI0013): edge, active high
inline constexpr uint32_t kIoapicPins = 24;

// MMIO.
inline constexpr uint64_t kIoapicBase = 0xfec0'0000ULL;
inline constexpr uint64_t kIoapicSize = 0x1000;
inline constexpr uint64_t kLapicBase = 0xfee0'0000ULL;
inline constexpr uint64_t kLapicSize = 0x1000;

// virtio-mmio transports (disks, networks): device i at kVirtioMmioBase + i * kVirtioMmioStride, edge-triggered on
// IOAPIC pin kVirtioMmioFirstGsi + i (the PCI pins, clear of every ISA line), declared in the DSDT. Each window's
// page is KVM memslot kVirtioMirrorFirstMemslot + i, read-only (the device's register mirror), far above the RAM
// slots 0..n-1 and below the 509 user memslots of the oldest KVM that has read-only memslots.
inline constexpr uint64_t kVirtioMmioBase = 0xd000'0000ULL;
inline constexpr uint64_t kVirtioMmioStride = 0x1000;
inline constexpr uint32_t kVirtioMmioFirstGsi = 16;
inline constexpr uint32_t kMaxVirtioMmio = 8;
inline constexpr uint32_t kVirtioMirrorFirstMemslot = 400;

// Low memory used by firmware structures (all below 1 MiB, marked reserved in e820).
inline constexpr uint64_t kEbdaStart = 0x9fc00;
inline constexpr uint64_t kBiosRomStart = 0xe0000;  // RSDP search area
inline constexpr uint64_t kBiosRomEnd = 0x100000;

// LAPIC timer input clock: 1 GHz, so one timer tick is one nanosecond (as KVM's in-kernel APIC).
inline constexpr uint64_t kApicBusHz = 1'000'000'000ULL;

}  // namespace coalesce::platform
