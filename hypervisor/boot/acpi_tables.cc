#include "hypervisor/boot/acpi_tables.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/boot/acpi_hotplug_aml.h"
#include "hypervisor/boot/aml.h"
#include "hypervisor/boot/boot_layout.h"

namespace coalesce {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr char kOemId[] = "COALSC";        // 6 bytes
constexpr char kOemTableId[] = "COALESCE";  // 8 bytes
constexpr char kCreatorId[] = "CLSC";       // 4 bytes
constexpr uint32_t kOemRevision = 1;
constexpr uint32_t kCreatorRevision = 1;
constexpr size_t kHeaderSize = 36;
constexpr uint32_t kMaxVcpus = 255;  // xAPIC ids are 8 bits and 0xff is the broadcast id

// FADT (ACPI 6.x, table 5.9) offsets.
constexpr size_t kFadtSize = 276;
constexpr uint8_t kFadtRevision = 6;
// Generic Address Structure address spaces and access sizes.
constexpr uint8_t kGasSystemIo = 1;
constexpr uint8_t kAccessByte = 1;
constexpr uint8_t kAccessWord = 2;
constexpr uint8_t kAccessDword = 3;

// FADT flags (table 5.10).
constexpr uint32_t kFadtWbinvd = 1u << 0;
constexpr uint32_t kFadtProcC1 = 1u << 2;
// PWR_BUTTON (bit 4) is clear: the fixed-feature power button exists (AcpiPm::PressPowerButton, `virsh shutdown`).
constexpr uint32_t kFadtSlpButton = 1u << 5;  // no fixed-feature sleep button
constexpr uint32_t kFadtFixRtc = 1u << 6;     // no RTC wake status in the fixed registers
constexpr uint32_t kFadtResetRegSup = 1u << 10;
// IA-PC boot architecture flags (table 5.11).
constexpr uint16_t kBootArchLegacyDevices = 1u << 0;  // ISA devices (UART, PIT, RTC) exist
constexpr uint16_t kBootArchVgaNotPresent = 1u << 2;
constexpr uint16_t kBootArchMsiNotSupported = 1u << 3;
// (8042 bit clear: no keyboard controller, so the kernel does not probe ports 0x60/0x64.)

// MADT (table 5.43) entry types and flags.
constexpr uint8_t kMadtLocalApic = 0;
constexpr uint8_t kMadtIoApic = 1;
constexpr uint8_t kMadtSourceOverride = 2;
constexpr uint8_t kMadtLocalApicNmi = 4;
constexpr uint32_t kMadtPcatCompat = 1u << 0;  // dual 8259 PICs present (we emulate them)
constexpr uint32_t kLocalApicEnabled = 1u << 0;
constexpr uint16_t kMpsActiveHigh = 0x1;
constexpr uint16_t kMpsLevel = 0x3 << 2;
constexpr uint8_t kAllProcessors = 0xFF;

// SRAT (5.2.16) structure types and flags.
constexpr uint8_t kSratLocalApicAffinity = 0;
constexpr uint8_t kSratMemoryAffinity = 1;
constexpr uint32_t kSratEnabled = 1u << 0;
constexpr uint32_t kSratHotPluggable = 1u << 1;

void Put(Bytes& b, size_t off, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void Append(Bytes& b, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutText(Bytes& b, size_t off, const char* text, size_t len) { std::memcpy(&b[off], text, len); }

Bytes Header(const char* signature, uint8_t revision) {
  Bytes b(kHeaderSize, 0);
  PutText(b, 0, signature, 4);
  b[8] = revision;
  PutText(b, 10, kOemId, 6);
  PutText(b, 16, kOemTableId, 8);
  Put(b, 24, kOemRevision, 4);
  PutText(b, 28, kCreatorId, 4);
  Put(b, 32, kCreatorRevision, 4);
  return b;
}

// Sets the length field and the checksum (byte 9) once the table is complete.
void Finish(Bytes& b) {
  Put(b, 4, b.size(), 4);
  b[9] = 0;
  b[9] = static_cast<uint8_t>(0x100 - AcpiChecksum(b));
}

void PutGas(Bytes& b, size_t off, uint8_t space, uint8_t bit_width, uint8_t access, uint64_t addr) {
  b[off] = space;
  b[off + 1] = bit_width;
  b[off + 2] = 0;  // bit offset
  b[off + 3] = access;
  Put(b, off + 4, addr, 8);
}

uint32_t Possible(const AcpiConfig& config) { return std::max(config.possible_vcpus, config.vcpu_count); }
bool Hotplug(const AcpiConfig& config) { return Possible(config) > config.vcpu_count; }

// MADT Local APIC structure (5.2.12.2) for vCPU `i`, the same in the MADT and a processor's _MAT.
Bytes LocalApicEntry(uint32_t i, bool enabled) {
  Bytes b{kMadtLocalApic, 8, static_cast<uint8_t>(i), static_cast<uint8_t>(i)};
  Append(b, enabled ? kLocalApicEnabled : 0, 4);
  return b;
}

Bytes BuildDsdt(const AcpiConfig& config) {
  namespace a = aml;
  std::vector<a::Bytes> sb;
  sb.push_back(a::Device("COM1", {
                                     a::Name("_HID", a::EisaId("PNP0501")),
                                     a::Name("_UID", a::Integer(1)),
                                     a::Name("_CRS", a::ResourceTemplate()
                                                         .Io(platform::kCom1Port, 8)
                                                         .IrqNoFlags(platform::kCom1Irq)
                                                         .ToBuffer()),
                                 }));
  // Processor devices, matched to the MADT's Local APIC entries by _UID = ACPI processor UID. With hotplug,
  // every CPU but the bootstrap processor is described by CpuHotplugAml (acpi_hotplug_aml.h) instead.
  for (uint32_t i = 0; i < (Hotplug(config) ? 1 : config.vcpu_count); ++i) {
    sb.push_back(a::Device(absl::StrFormat("C%03X", i),
                           {a::Name("_HID", a::String("ACPI0007")), a::Name("_UID", a::Integer(i))}));
  }
  if (Hotplug(config)) {
    std::vector<a::Bytes> mat;
    for (uint32_t i = 0; i < Possible(config); ++i) mat.push_back(LocalApicEntry(i, true));
    for (a::Bytes& term : CpuHotplugAml(Possible(config), mat, config.numa.enabled())) sb.push_back(std::move(term));
  }
  if (config.memory_hotplug.enabled()) {
    for (a::Bytes& term : MemoryHotplugAml(config.memory_hotplug, config.numa.enabled())) sb.push_back(std::move(term));
  }
  if (Hotplug(config) || config.memory_hotplug.enabled()) {
    sb.push_back(HotplugEventDevice(Hotplug(config), config.memory_hotplug.enabled()));
  }
  for (size_t i = 0; i < config.virtio_mmio.size(); ++i) {
    const AcpiVirtioMmioDevice& d = config.virtio_mmio[i];
    sb.push_back(a::Device(absl::StrFormat("VR%02X", i),
                           {
                               a::Name("_HID", a::String("LNRO0005")),
                               a::Name("_UID", a::Integer(i)),
                               a::Name("_CCA", a::Integer(1)),  // cache-coherent DMA
                               a::Name("_CRS", a::ResourceTemplate()
                                                   .Memory32Fixed(static_cast<uint32_t>(d.base), d.size)
                                                   .Interrupt(d.gsi, /*level_triggered=*/false)
                                                   .ToBuffer()),
                           }));
  }
  Bytes b = Header("DSDT", 2);  // revision 2: 64-bit integers
  a::Bytes scope = a::Scope("\\_SB_", sb);
  b.insert(b.end(), scope.begin(), scope.end());
  // \_S5: {SLP_TYPa, SLP_TYPb, reserved, reserved}; the kernel writes SLP_TYPa | SLP_EN to PM1a_CNT.
  a::Bytes s5 = a::Name("\\_S5_", a::Package({a::Integer(platform::kAcpiS5SleepType),
                                               a::Integer(platform::kAcpiS5SleepType), a::Integer(0),
                                               a::Integer(0)}));
  b.insert(b.end(), s5.begin(), s5.end());
  Finish(b);
  return b;
}

Bytes BuildFacs() {
  Bytes b(64, 0);  // no checksum; 64-byte aligned
  PutText(b, 0, "FACS", 4);
  Put(b, 4, 64, 4);
  b[32] = 2;  // version
  return b;
}

Bytes BuildFadt(uint64_t facs, uint64_t dsdt) {
  Bytes b = Header("FACP", kFadtRevision);
  b.resize(kFadtSize, 0);
  // FACS only through X_FIRMWARE_CTRL: the spec wants FIRMWARE_CTRL zero when the X field is set, and Linux
  // installs the FACS twice when both are (seen under QEMU with these tables).
  Put(b, 40, dsdt, 4);  // DSDT (the same value as X_DSDT)
  b[45] = 0;            // preferred PM profile: unspecified
  Put(b, 46, platform::kAcpiSciIrq, 2);
  // SMI_CMD = 0 and ACPI_ENABLE/DISABLE = 0: the machine is always in ACPI mode (SCI_EN reads as 1).
  Put(b, 48, platform::kAcpiSmiCommandPort, 4);
  Put(b, 56, platform::kAcpiPm1aEventPort, 4);
  Put(b, 64, platform::kAcpiPm1aControlPort, 4);
  Put(b, 76, platform::kAcpiPmTimerPort, 4);
  b[88] = 4;  // PM1_EVT_LEN: status (2) + enable (2)
  b[89] = 2;  // PM1_CNT_LEN
  b[91] = 4;  // PM_TMR_LEN
  Put(b, 96, 101, 2);   // P_LVL2_LAT > 100: C2 not supported
  Put(b, 98, 1001, 2);  // P_LVL3_LAT > 1000: C3 not supported
  Put(b, 109, kBootArchLegacyDevices | kBootArchVgaNotPresent | kBootArchMsiNotSupported, 2);
  Put(b, 112, kFadtWbinvd | kFadtProcC1 | kFadtSlpButton | kFadtFixRtc | kFadtResetRegSup, 4);
  PutGas(b, 116, kGasSystemIo, 8, kAccessByte, platform::kResetControlPort);
  b[128] = 0x06;  // RESET_VALUE: full reset through the 0xcf9 register
  b[131] = 0;     // FADT minor version (6.0)
  Put(b, 132, facs, 8);  // X_FIRMWARE_CTRL
  Put(b, 140, dsdt, 8);  // X_DSDT
  PutGas(b, 148, kGasSystemIo, 32, kAccessWord, platform::kAcpiPm1aEventPort);
  PutGas(b, 172, kGasSystemIo, 16, kAccessWord, platform::kAcpiPm1aControlPort);
  PutGas(b, 208, kGasSystemIo, 32, kAccessDword, platform::kAcpiPmTimerPort);
  PutText(b, 268, "COALESCE", 8);  // hypervisor vendor identity
  Finish(b);
  return b;
}

Bytes BuildMadt(const AcpiConfig& config) {
  Bytes b = Header("APIC", 4);
  Append(b, platform::kLapicBase, 4);
  Append(b, kMadtPcatCompat, 4);
  // A CPU that may be hot-added later is a disabled entry: Linux counts it as possible ("hotplug CPUs").
  for (uint32_t i = 0; i < Possible(config); ++i) {
    const Bytes entry = LocalApicEntry(i, i < config.vcpu_count);
    b.insert(b.end(), entry.begin(), entry.end());
  }
  b.insert(b.end(), {kMadtIoApic, 12, config.ioapic_id, 0});
  Append(b, platform::kIoapicBase, 4);
  Append(b, 0, 4);  // GSI base
  // ISA IRQ 0 (PIT) is wired to IOAPIC pin 2, as on PCs; the SCI is level-triggered, active high.
  b.insert(b.end(), {kMadtSourceOverride, 10, 0, static_cast<uint8_t>(platform::kPitIrq)});
  Append(b, 2, 4);
  Append(b, 0, 2);  // conforms to the bus
  b.insert(b.end(), {kMadtSourceOverride, 10, 0, static_cast<uint8_t>(platform::kAcpiSciIrq)});
  Append(b, platform::kAcpiSciIrq, 4);
  Append(b, kMpsActiveHigh | kMpsLevel, 2);
  // LINT1 of every processor is the NMI input.
  b.insert(b.end(), {kMadtLocalApicNmi, 6, kAllProcessors});
  Append(b, 0, 2);
  b.push_back(1);
  Finish(b);
  return b;
}

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// Where the boot RAM ends (its highest region's end).
uint64_t RamEnd(const AcpiConfig& config) {
  uint64_t end = 0;
  for (const MemoryRegion& r : config.ram) end = std::max(end, r.guest_phys + r.size);
  return end;
}

// Where the spare domains' SRAT ranges start: the first 1 GiB boundary above the RAM and the hot-pluggable area.
uint64_t SpareDomainsBase(const AcpiConfig& config) {
  const AcpiMemoryHotplug& hp = config.memory_hotplug;
  return AlignUp(std::max(RamEnd(config), hp.enabled() ? hp.base + hp.size() : 0), platform::kMemoryHotplugAlign);
}

// Static Resource Affinity Table: the proximity domain of every Local APIC and of every RAM range.
Bytes BuildSrat(const AcpiConfig& config) {
  Bytes b = Header("SRAT", 3);
  Append(b, 1, 4);  // reserved, 1 for compatibility with ACPI 1.0 readers
  Append(b, 0, 8);
  for (size_t d = 0; d < config.numa.nodes.size(); ++d) {
    for (uint32_t apic_id : config.numa.nodes[d].vcpus) {
      b.insert(b.end(), {kSratLocalApicAffinity, 16, static_cast<uint8_t>(d), static_cast<uint8_t>(apic_id)});
      Append(b, kSratEnabled, 4);
      b.push_back(0);         // local SAPIC EID
      Append(b, d >> 8, 3);   // proximity domain, bits 31:8
      Append(b, 0, 4);        // clock domain
    }
  }
  auto memory_affinity = [&b](uint32_t domain, uint64_t base, uint64_t length, uint32_t flags) {
    b.insert(b.end(), {kSratMemoryAffinity, 40});
    Append(b, domain, 4);
    Append(b, 0, 2);
    Append(b, base, 8);
    Append(b, length, 8);
    Append(b, 0, 4);
    Append(b, flags, 4);
    Append(b, 0, 8);
  };
  for (const NumaMemoryRange& r : NumaMemoryRanges(config.numa, config.ram)) {
    memory_affinity(r.domain, r.base, r.length, kSratEnabled);
  }
  // The hot-pluggable area, whole, as firmware describes DIMM slots: the guest knows from boot that memory may
  // appear there, by default in home's domain (a slot's _PXM, read when it is plugged in, may name another).
  const AcpiMemoryHotplug& hp = config.memory_hotplug;
  if (hp.enabled()) memory_affinity(0, hp.base, hp.size(), kSratEnabled | kSratHotPluggable);
  // Each spare domain: a hot-pluggable range no RAM will occupy, above everything else, only so that the guest
  // counts the domain as possible (Linux knows the domains of the SRAT and no others; a CPU or slot whose _PXM
  // names one joins it).
  uint64_t spare_base = SpareDomainsBase(config);
  for (size_t d = 0; d < config.numa.nodes.size(); ++d) {
    if (!config.numa.nodes[d].spare) continue;
    memory_affinity(static_cast<uint32_t>(d), spare_base, platform::kMemoryHotplugSlotSize,
                    kSratEnabled | kSratHotPluggable);
    spare_base += platform::kMemoryHotplugSlotSize;
  }
  Finish(b);
  return b;
}

// System Locality Information Table: the relative distance between every pair of domains.
Bytes BuildSlit(const AcpiConfig& config) {
  Bytes b = Header("SLIT", 1);
  Append(b, config.numa.nodes.size(), 8);
  b.insert(b.end(), config.numa.distances.begin(), config.numa.distances.end());
  Finish(b);
  return b;
}

Bytes BuildRootTable(const char* signature, const std::vector<uint64_t>& entries, int entry_bytes) {
  Bytes b = Header(signature, 1);
  for (uint64_t e : entries) Append(b, e, entry_bytes);
  Finish(b);
  return b;
}

Bytes BuildRsdp(uint64_t rsdt, uint64_t xsdt) {
  Bytes b(36, 0);
  PutText(b, 0, "RSD PTR ", 8);
  PutText(b, 9, kOemId, 6);
  b[15] = 2;  // revision: ACPI 2.0+ (XSDT present)
  Put(b, 16, rsdt, 4);
  Put(b, 20, 36, 4);
  Put(b, 24, xsdt, 8);
  b[8] = static_cast<uint8_t>(0x100 - AcpiChecksum(std::span<const uint8_t>(b).first(20)));
  b[32] = static_cast<uint8_t>(0x100 - AcpiChecksum(b));
  return b;
}

}  // namespace

uint8_t AcpiChecksum(std::span<const uint8_t> bytes) {
  uint8_t sum = 0;
  for (uint8_t x : bytes) sum = static_cast<uint8_t>(sum + x);
  return sum;
}

const AcpiTable* AcpiTableSet::Find(std::string_view signature) const {
  for (const AcpiTable& t : tables) {
    if (t.signature == signature) return &t;
  }
  return nullptr;
}

absl::StatusOr<AcpiTableSet> BuildAcpiTableSet(const AcpiConfig& config, uint64_t base) {
  if (config.vcpu_count == 0 || config.vcpu_count > kMaxVcpus) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ACPI: %u vCPUs; the MADT's xAPIC entries describe 1 to %u", config.vcpu_count, kMaxVcpus));
  }
  if (config.possible_vcpus != 0 && (config.possible_vcpus < config.vcpu_count || config.possible_vcpus > kMaxVcpus)) {
    return absl::InvalidArgumentError(absl::StrFormat("ACPI: %u possible vCPUs; %u to %u with %u at boot",
                                                      config.possible_vcpus, config.vcpu_count, kMaxVcpus,
                                                      config.vcpu_count));
  }
  for (const AcpiVirtioMmioDevice& d : config.virtio_mmio) {
    if (d.base > UINT32_MAX || d.size > UINT32_MAX - d.base) {
      return absl::InvalidArgumentError(absl::StrFormat("ACPI: virtio-mmio window %#x is above 4 GiB", d.base));
    }
    if (d.gsi >= platform::kIoapicPins) {
      return absl::InvalidArgumentError(
          absl::StrFormat("ACPI: virtio-mmio GSI %u is past the IOAPIC's %u pins", d.gsi, platform::kIoapicPins));
    }
  }
  if (config.virtio_mmio.size() > 256) return absl::InvalidArgumentError("ACPI: more than 256 virtio-mmio devices");
  const bool numa = config.numa.enabled();
  if (const AcpiMemoryHotplug& hp = config.memory_hotplug; hp.enabled()) {
    const uint64_t ram_end = RamEnd(config);
    if (hp.slots > platform::kHotplugMaxSlots || hp.slot_size == 0 ||
        hp.slot_size % platform::kMemoryHotplugSlotSize != 0 || hp.base % platform::kMemoryHotplugSlotSize != 0 ||
        hp.base < ram_end) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ACPI: %u memory hotplug slots of %#x bytes at %#x; at most %u slots, sizes and base in 128 MiB steps, "
          "above the RAM (it ends at %#x)",
          hp.slots, hp.slot_size, hp.base, platform::kHotplugMaxSlots, ram_end));
    }
  }
  if (numa) {
    uint64_t ram = 0;
    for (const MemoryRegion& r : config.ram) ram += r.size;
    RETURN_IF_ERROR(ValidateNumaTopology(config.numa, Possible(config), ram));
  }
  // Layout: RSDP, FACS (64-aligned), DSDT, FADT, MADT, [SRAT, SLIT,] XSDT, RSDT, each 16-byte aligned.
  AcpiTableSet set;
  const uint64_t rsdp = AlignUp(base, 16);
  const uint64_t facs = AlignUp(rsdp + 36, 64);
  Bytes facs_bytes = BuildFacs();
  const uint64_t dsdt = AlignUp(facs + facs_bytes.size(), 16);
  Bytes dsdt_bytes = BuildDsdt(config);
  const uint64_t fadt = AlignUp(dsdt + dsdt_bytes.size(), 16);
  Bytes fadt_bytes = BuildFadt(facs, dsdt);
  const uint64_t madt = AlignUp(fadt + fadt_bytes.size(), 16);
  Bytes madt_bytes = BuildMadt(config);
  uint64_t next = AlignUp(madt + madt_bytes.size(), 16);
  std::vector<uint64_t> roots = {fadt, madt};
  std::vector<AcpiTable> numa_tables;
  if (numa) {
    Bytes srat_bytes = BuildSrat(config);
    const uint64_t srat = next;
    const uint64_t slit = AlignUp(srat + srat_bytes.size(), 16);
    Bytes slit_bytes = BuildSlit(config);
    next = AlignUp(slit + slit_bytes.size(), 16);
    roots.insert(roots.end(), {srat, slit});
    numa_tables.push_back({"SRAT", srat, std::move(srat_bytes)});
    numa_tables.push_back({"SLIT", slit, std::move(slit_bytes)});
  }
  const uint64_t xsdt = next;
  Bytes xsdt_bytes = BuildRootTable("XSDT", roots, 8);
  const uint64_t rsdt = AlignUp(xsdt + xsdt_bytes.size(), 16);
  Bytes rsdt_bytes = BuildRootTable("RSDT", roots, 4);
  Bytes rsdp_bytes = BuildRsdp(rsdt, xsdt);
  set.rsdp_addr = rsdp;
  set.end = rsdt + rsdt_bytes.size();
  set.tables = {
      {"RSDP", rsdp, std::move(rsdp_bytes)}, {"FACS", facs, std::move(facs_bytes)},
      {"DSDT", dsdt, std::move(dsdt_bytes)}, {"FACP", fadt, std::move(fadt_bytes)},
      {"APIC", madt, std::move(madt_bytes)},
  };
  for (AcpiTable& t : numa_tables) set.tables.push_back(std::move(t));
  set.tables.push_back({"XSDT", xsdt, std::move(xsdt_bytes)});
  set.tables.push_back({"RSDT", rsdt, std::move(rsdt_bytes)});
  return set;
}

absl::StatusOr<uint64_t> BuildAcpiTables(GuestMemory& mem, const AcpiConfig& config) {
  ASSIGN_OR_RETURN(AcpiTableSet set, BuildAcpiTableSet(config, boot_layout::kAcpiTablesAddr));
  if (set.end > boot_layout::kAcpiTablesEnd) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "ACPI tables need %u bytes, more than the BIOS area [%#x, %#x) holds", set.end - boot_layout::kAcpiTablesAddr,
        boot_layout::kAcpiTablesAddr, boot_layout::kAcpiTablesEnd));
  }
  ASSIGN_OR_RETURN(auto area, mem.HostSpan(boot_layout::kAcpiTablesAddr, set.end - boot_layout::kAcpiTablesAddr));
  std::fill(area.begin(), area.end(), 0);
  for (const AcpiTable& t : set.tables) RETURN_IF_ERROR(mem.Write(t.addr, t.bytes));
  return set.rsdp_addr;
}

}  // namespace coalesce
