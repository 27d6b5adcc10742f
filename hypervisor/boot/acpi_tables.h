// The guest's ACPI tables, built in code: RSDP (v2) -> XSDT (and RSDT) -> FADT (rev 6) -> FACS, DSDT; MADT;
// with a NUMA topology (numa_topology.h) also SRAT and SLIT.
// The DSDT's AML is generated (aml.h), not compiled from ASL, so it can follow the machine's configuration
// (vCPU count, virtio-mmio devices); docs/BOOT.md explains the choice.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/boot/acpi_hotplug_aml.h"
#include "hypervisor/boot/numa_topology.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

// A virtio-mmio transport declared in the DSDT as LNRO0005, which Linux's virtio_mmio driver binds (the
// Debian cloud kernel cannot take virtio_mmio.device= from the command line).
struct AcpiVirtioMmioDevice {
  uint64_t base;
  uint32_t size;
  uint32_t gsi;
};

struct AcpiConfig {
  uint32_t vcpu_count = 1;  // 1..255: one enabled Local APIC per vCPU, APIC id = vCPU index
  // CPUs the guest may gain while it runs (ACPI CPU hotplug, devmodel/hotplug_controller.h): when more than
  // vcpu_count, vCPUs vcpu_count..possible_vcpus-1 are disabled MADT entries, every CPU but 0 gets _STA, _MAT
  // and _EJ0 from the hotplug controller, and a Generic Event Device on platform::kHotplugIrq runs the
  // scan. 0: vcpu_count (no hotplug; the tables are as before).
  uint32_t possible_vcpus = 0;
  uint8_t ioapic_id = 0;    // must match the IOAPIC device's ID register
  std::vector<AcpiVirtioMmioDevice> virtio_mmio;
  // Proximity domains (SRAT: each vCPU's and each RAM range's domain; SLIT: distances) when numa.enabled();
  // `ram` is the guest's RAM layout the domains' memory is cut from (GuestMemory::regions()).
  NumaTopology numa;
  std::vector<MemoryRegion> ram;
  // RAM the guest may gain while it runs (ACPI memory hotplug, docs/HOTPLUG.md): memory devices whose _STA
  // reads the memory hotplug controller, run by the same Generic Event Device as CPU hotplug. Not in `ram`.
  AcpiMemoryHotplug memory_hotplug;
};

struct AcpiTable {
  std::string signature;  // "RSDP" for the root pointer, else the table's own
  uint64_t addr;
  std::vector<uint8_t> bytes;
};

// The tables laid out from `base` (16-byte aligned; the RSDP first, the FACS 64-byte aligned).
struct AcpiTableSet {
  uint64_t rsdp_addr = 0;
  uint64_t end = 0;
  std::vector<AcpiTable> tables;
  [[nodiscard]] const AcpiTable* Find(std::string_view signature) const;
};

// Pure: computes every table. InvalidArgument for a vCPU count outside 1..255, possible_vcpus under
// vcpu_count or over 255, memory hotplug slots over 256 or not 128 MiB-aligned above the RAM, or a NUMA topology that
// does not fit the possible vCPUs and RAM (ValidateNumaTopology).
absl::StatusOr<AcpiTableSet> BuildAcpiTableSet(const AcpiConfig& config, uint64_t base);

// Builds the set at boot_layout::kAcpiTablesAddr (0xE0000, inside the BIOS area the e820 map reserves, where
// the kernel's RSDP scan also looks) and writes it. Returns the RSDP address for boot_params.acpi_rsdp_addr.
// ResourceExhausted if the tables outgrow [0xE0000, 0x100000).
absl::StatusOr<uint64_t> BuildAcpiTables(GuestMemory& mem, const AcpiConfig& config);

// The 8-bit sum used by every ACPI checksum.
uint8_t AcpiChecksum(std::span<const uint8_t> bytes);

}  // namespace coalesce
