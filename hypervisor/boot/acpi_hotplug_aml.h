// The DSDT's hotplug AML (docs/HOTPLUG.md): each hotplug controller's registers (devmodel/hotplug_controller.h)
// as field units, an ACPI device per possible CPU or memory slot whose _STA reads its present bit and whose _EJ0
// writes the eject register, a scan method per kind that turns the controller's pending bits into Notify, and
// the Generic Event Device whose interrupt runs the scans. Linux's acpi_processor and acpi_memhotplug drivers
// do the rest: they add a CPU or memory on a device check (1), and on an eject request (3) offline it and call
// _EJ0.
#pragma once

#include <cstdint>
#include <vector>

#include "hypervisor/boot/aml.h"

namespace coalesce {

// The guest's hot-pluggable RAM: `slots` memory devices (PNP0C80) of `slot_size` bytes each, slot i at
// base + i * slot_size, absent at boot (the e820 map leaves the area out).
struct AcpiMemoryHotplug {
  uint64_t base = 0;
  uint64_t slot_size = 0;
  uint32_t slots = 0;  // 0: no memory hotplug
  [[nodiscard]] bool enabled() const { return slots > 0; }
  [[nodiscard]] uint64_t size() const { return slot_size * slots; }
};

// CPUs 1..possible-1 as hot-pluggable processor devices (ACPI0007) and the scan method CSCN. `mat[i]` is CPU
// i's MADT Local APIC entry, enabled (its _MAT: Linux takes a hot-added CPU's APIC id from there). With `numa`
// (the guest has a SRAT) each also has a _PXM that reads the controller's domain register for it, so a CPU
// plugged in for an edge attached after boot joins that edge's domain (Linux takes a hot-added CPU's node
// from _PXM over the SRAT's).
std::vector<aml::Bytes> CpuHotplugAml(uint32_t possible, const std::vector<aml::Bytes>& mat, bool numa);

// Every slot as a memory device with a fixed _CRS, and the scan method MSCN. With `numa`, a _PXM as for CPUs
// (Linux's acpi_memhotplug adds the range to the node _PXM names).
std::vector<aml::Bytes> MemoryHotplugAml(const AcpiMemoryHotplug& memory, bool numa);

// The Generic Event Device (ACPI0013) on platform::kHotplugIrq whose _EVT runs CSCN and/or MSCN.
aml::Bytes HotplugEventDevice(bool cpus, bool memory);

}  // namespace coalesce
