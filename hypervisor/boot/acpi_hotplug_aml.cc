#include "hypervisor/boot/acpi_hotplug_aml.h"

#include <string>

#include "absl/strings/str_format.h"
#include "hypervisor/base/platform.h"

namespace coalesce {
namespace {

namespace a = aml;
namespace p = platform;

// The names one controller's AML uses: a 4-character region, three letters for the bitmaps' field units (a
// letter and three hex digits: present, insert pending, remove requested), the three id registers, and a
// letter for the slots' devices.
struct ControllerNames {
  const char* region;
  char present;
  char insert;
  char remove;
  const char* ack_insert;
  const char* ack_remove;
  const char* eject;
  const char* select;  // the slot whose domain `domain` reads
  const char* domain;
  const char* pxm;  // the serialized method: select a slot, read its domain
  char device;
};
constexpr ControllerNames kCpuNames{"CPHR", 'P', 'I', 'R', "CINS", "CREM", "CEJ0", "CSEL", "CDOM", "CPXM", 'C'};
constexpr ControllerNames kMemoryNames{"MPHR", 'A', 'N', 'G', "MINS", "MREM", "MEJ0", "MSEL", "MDOM", "MPXM", 'M'};

std::string Numbered(char letter, uint32_t i) { return absl::StrFormat("%c%03X", letter, i); }

// The controller's OperationRegion and its Field: each bitmap 256 bits long (32 bytes), one after the other,
// `n` named bits and the rest unnamed, then the id registers.
void AppendRegisters(const ControllerNames& names, uint16_t port, uint32_t n, std::vector<a::Bytes>& out) {
  static_assert(p::kHotplugInsertOffset == p::kHotplugPresentOffset + p::kHotplugMaxSlots / 8 &&
                p::kHotplugRemoveOffset == p::kHotplugInsertOffset + p::kHotplugMaxSlots / 8 &&
                p::kHotplugAckInsertOffset == p::kHotplugRemoveOffset + p::kHotplugMaxSlots / 8 &&
                p::kHotplugAckRemoveOffset == p::kHotplugAckInsertOffset + 1 &&
                p::kHotplugEjectOffset == p::kHotplugAckRemoveOffset + 1 &&
                p::kHotplugSelectOffset == p::kHotplugEjectOffset + 1 &&
                p::kHotplugDomainOffset == p::kHotplugSelectOffset + 1 && p::kHotplugPresentOffset == 0);
  std::vector<a::FieldUnit> units;
  for (char letter : {names.present, names.insert, names.remove}) {
    for (uint32_t i = 0; i < n; ++i) units.push_back({Numbered(letter, i), 1});
    if (n < p::kHotplugMaxSlots) units.push_back({"", p::kHotplugMaxSlots - n});
  }
  units.push_back({names.ack_insert, 8});
  units.push_back({names.ack_remove, 8});
  units.push_back({names.eject, 8});
  units.push_back({names.select, 8});
  units.push_back({names.domain, 8});
  out.push_back(a::SystemIoRegion(names.region, port, p::kHotplugSize));
  out.push_back(a::ByteField(names.region, units));
  // Serialized: the select and the read are one step, whichever CPU of the guest evaluates a _PXM.
  out.push_back(a::Method(names.pxm, 1, true, {a::Store(a::Arg(0), names.select), a::Return(a::Ref(names.domain))}));
}

// Slot i's _PXM: the domain the VMM set for it (HotplugController::SetDomain), read when the guest adds it.
a::Bytes SlotProximity(const ControllerNames& names, uint32_t i) {
  return a::Method("_PXM", 0, false, {a::Return(a::Call(names.pxm, {a::Integer(i)}))});
}

// _STA (0x0F present, 0 absent) and _EJ0 of slot i.
std::vector<a::Bytes> SlotMethods(const ControllerNames& names, uint32_t i) {
  return {
      a::Method("_STA", 0, false,
                {a::If(a::Ref(Numbered(names.present, i)), {a::Return(a::Integer(0x0F))}), a::Return(a::Integer(0))}),
      a::Method("_EJ0", 1, false, {a::Store(a::Integer(i), names.eject)}),
  };
}

// The scan's two tests for slot i: an insert pending is acknowledged and announced (device check), a remove
// request acknowledged and passed on (eject request).
void AppendScan(const ControllerNames& names, uint32_t i, std::vector<a::Bytes>& scan) {
  const std::string device = Numbered(names.device, i);
  scan.push_back(a::If(a::Ref(Numbered(names.insert, i)),
                       {a::Store(a::Integer(i), names.ack_insert), a::Notify(device, a::Integer(1))}));
  scan.push_back(a::If(a::Ref(Numbered(names.remove, i)),
                       {a::Store(a::Integer(i), names.ack_remove), a::Notify(device, a::Integer(3))}));
}

}  // namespace

std::vector<aml::Bytes> CpuHotplugAml(uint32_t possible, const std::vector<aml::Bytes>& mat, bool numa) {
  std::vector<a::Bytes> out;
  AppendRegisters(kCpuNames, p::kCpuHotplugPort, possible, out);
  std::vector<a::Bytes> scan;
  for (uint32_t i = 1; i < possible; ++i) {
    std::vector<a::Bytes> terms = {a::Name("_HID", a::String("ACPI0007")), a::Name("_UID", a::Integer(i))};
    for (a::Bytes& m : SlotMethods(kCpuNames, i)) terms.push_back(std::move(m));
    terms.push_back(a::Name("_MAT", a::Buffer(mat[i])));
    if (numa) terms.push_back(SlotProximity(kCpuNames, i));
    out.push_back(a::Device(Numbered(kCpuNames.device, i), terms));
    AppendScan(kCpuNames, i, scan);
  }
  out.push_back(a::Method("CSCN", 0, true, scan));
  return out;
}

std::vector<aml::Bytes> MemoryHotplugAml(const AcpiMemoryHotplug& memory, bool numa) {
  std::vector<a::Bytes> out;
  AppendRegisters(kMemoryNames, p::kMemoryHotplugPort, memory.slots, out);
  std::vector<a::Bytes> scan;
  for (uint32_t i = 0; i < memory.slots; ++i) {
    const uint64_t base = memory.base + i * memory.slot_size;
    // Linux's acpi_memhotplug takes the range from _CRS, and the node from _PXM where the SRAT names one.
    std::vector<a::Bytes> terms = {
        a::Name("_HID", a::EisaId("PNP0C80")),
        a::Name("_UID", a::Integer(i)),
        a::Name("_CRS", a::ResourceTemplate().QWordMemory(base, memory.slot_size).ToBuffer()),
    };
    if (numa) terms.push_back(SlotProximity(kMemoryNames, i));
    for (a::Bytes& m : SlotMethods(kMemoryNames, i)) terms.push_back(std::move(m));
    out.push_back(a::Device(Numbered(kMemoryNames.device, i), terms));
    AppendScan(kMemoryNames, i, scan);
  }
  out.push_back(a::Method("MSCN", 0, true, scan));
  return out;
}

aml::Bytes HotplugEventDevice(bool cpus, bool memory) {
  // One line for both kinds: _EVT runs every scan, and a scan with nothing pending does nothing.
  std::vector<a::Bytes> evt;
  if (cpus) evt.push_back(a::Ref("CSCN"));
  if (memory) evt.push_back(a::Ref("MSCN"));
  return a::Device(
      "GED0",
      {
          a::Name("_HID", a::String("ACPI0013")),
          a::Name("_UID", a::Integer(0)),
          a::Name("_CRS", a::ResourceTemplate().Interrupt(p::kHotplugIrq, /*level_triggered=*/false).ToBuffer()),
          a::Method("_EVT", 1, false, evt),
      });
}

}  // namespace coalesce
