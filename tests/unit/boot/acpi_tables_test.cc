#include "hypervisor/boot/acpi_tables.h"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <tuple>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "hypervisor/base/platform.h"
#include "hypervisor/boot/aml.h"
#include "hypervisor/boot/boot_layout.h"

namespace coalesce {
namespace {

template <typename T>
T Peek(const std::vector<uint8_t>& b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

AcpiTableSet Build(uint32_t vcpus, std::vector<AcpiVirtioMmioDevice> virtio = {}, NumaTopology numa = {},
                   uint64_t memory = 256ULL << 20) {
  auto set = BuildAcpiTableSet({.vcpu_count = vcpus, .ioapic_id = 0, .virtio_mmio = std::move(virtio),
                                .numa = std::move(numa), .ram = GuestMemory::Layout(memory)},
                               boot_layout::kAcpiTablesAddr);
  REQUIRE(set.ok());
  return *set;
}

const AcpiTable& Get(const AcpiTableSet& set, std::string_view sig) {
  const AcpiTable* t = set.Find(sig);
  REQUIRE(t != nullptr);
  return *t;
}

// Runs a command; returns its exit status and output.
std::pair<int, std::string> Run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

std::string ReadText(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/coalesce-acpi-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

TEST_CASE("ACPI: every table's checksum and length are right") {
  for (uint32_t vcpus : {1u, 2u, 8u, 255u}) {
    AcpiTableSet set = Build(vcpus, {{0xd0000000, 0x200, 16}});
    for (const AcpiTable& t : set.tables) {
      INFO(t.signature << " with " << vcpus << " vCPUs");
      CHECK(t.addr % 16 == 0);
      if (t.signature == "RSDP") {
        CHECK(AcpiChecksum(std::span(t.bytes).first(20)) == 0);
        CHECK(AcpiChecksum(t.bytes) == 0);
      } else if (t.signature == "FACS") {
        CHECK(t.addr % 64 == 0);
        CHECK(Peek<uint32_t>(t.bytes, 4) == 64);
      } else {
        CHECK(std::string(t.bytes.begin(), t.bytes.begin() + 4) == t.signature);
        CHECK(Peek<uint32_t>(t.bytes, 4) == t.bytes.size());
        CHECK(AcpiChecksum(t.bytes) == 0);
      }
    }
    CHECK(set.end <= boot_layout::kAcpiTablesEnd);
  }
}

TEST_CASE("ACPI: RSDP -> XSDT/RSDT -> FADT -> DSDT/FACS, MADT") {
  AcpiTableSet set = Build(4);
  const AcpiTable& rsdp = Get(set, "RSDP");
  CHECK(set.rsdp_addr == boot_layout::kAcpiTablesAddr);
  CHECK(std::string(rsdp.bytes.begin(), rsdp.bytes.begin() + 8) == "RSD PTR ");
  CHECK(rsdp.bytes[15] == 2);
  CHECK(Peek<uint64_t>(rsdp.bytes, 24) == Get(set, "XSDT").addr);
  CHECK(Peek<uint32_t>(rsdp.bytes, 16) == Get(set, "RSDT").addr);
  const AcpiTable& xsdt = Get(set, "XSDT");
  REQUIRE(xsdt.bytes.size() == 36 + 16);
  CHECK(Peek<uint64_t>(xsdt.bytes, 36) == Get(set, "FACP").addr);
  CHECK(Peek<uint64_t>(xsdt.bytes, 44) == Get(set, "APIC").addr);

  const AcpiTable& fadt = Get(set, "FACP");
  CHECK(fadt.bytes.size() == 276);
  CHECK(fadt.bytes[8] == 6);
  CHECK(Peek<uint32_t>(fadt.bytes, 36) == 0);  // FIRMWARE_CTRL: zero when X_FIRMWARE_CTRL is set
  CHECK(Peek<uint64_t>(fadt.bytes, 132) == Get(set, "FACS").addr);
  CHECK(Peek<uint32_t>(fadt.bytes, 40) == Get(set, "DSDT").addr);
  CHECK(Peek<uint64_t>(fadt.bytes, 140) == Get(set, "DSDT").addr);
  CHECK(Peek<uint16_t>(fadt.bytes, 46) == platform::kAcpiSciIrq);
  CHECK(Peek<uint32_t>(fadt.bytes, 48) == 0);  // SMI_CMD: ACPI always enabled
  CHECK(Peek<uint32_t>(fadt.bytes, 56) == platform::kAcpiPm1aEventPort);
  CHECK(Peek<uint32_t>(fadt.bytes, 64) == platform::kAcpiPm1aControlPort);
  CHECK(Peek<uint32_t>(fadt.bytes, 76) == platform::kAcpiPmTimerPort);
  CHECK(Peek<uint64_t>(fadt.bytes, 152) == platform::kAcpiPm1aEventPort);  // X_PM1a_EVT_BLK address
  CHECK(Peek<uint64_t>(fadt.bytes, 212) == platform::kAcpiPmTimerPort);
  const uint32_t flags = Peek<uint32_t>(fadt.bytes, 112);
  CHECK((flags & (1u << 20)) == 0);  // not hardware-reduced
  CHECK((flags & (1u << 4)) == 0);   // a fixed-feature power button (virsh shutdown)
  CHECK((flags & (1u << 10)) != 0);  // reset register supported
  CHECK((flags & (1u << 8)) == 0);   // 24-bit PM timer
  CHECK(fadt.bytes[116] == 1);       // reset register in system I/O space
  CHECK(Peek<uint64_t>(fadt.bytes, 120) == platform::kResetControlPort);
  CHECK(fadt.bytes[128] == 0x06);
  CHECK((Peek<uint16_t>(fadt.bytes, 109) & 0x2) == 0);  // no 8042
}

TEST_CASE("ACPI: MADT has one enabled Local APIC per vCPU, the IOAPIC, overrides and LINT1 NMI") {
  for (uint32_t vcpus : {1u, 3u, 64u}) {
    AcpiTableSet set = Build(vcpus);
    const auto& m = Get(set, "APIC").bytes;
    CHECK(Peek<uint32_t>(m, 36) == platform::kLapicBase);
    uint32_t lapics = 0, ioapics = 0, nmis = 0;
    std::vector<std::pair<uint8_t, uint32_t>> overrides;
    for (size_t off = 44; off < m.size();) {
      const uint8_t type = m[off];
      const uint8_t len = m[off + 1];
      REQUIRE(len >= 2);
      REQUIRE(off + len <= m.size());
      if (type == 0) {
        CHECK(len == 8);
        CHECK(m[off + 2] == lapics);  // ACPI processor UID
        CHECK(m[off + 3] == lapics);  // APIC id = vCPU index
        CHECK((Peek<uint32_t>(m, off + 4) & 1) == 1);
        ++lapics;
      } else if (type == 1) {
        CHECK(Peek<uint32_t>(m, off + 4) == platform::kIoapicBase);
        CHECK(Peek<uint32_t>(m, off + 8) == 0);
        ++ioapics;
      } else if (type == 2) {
        overrides.push_back({m[off + 3], Peek<uint32_t>(m, off + 4)});
        if (m[off + 3] == platform::kAcpiSciIrq) CHECK(Peek<uint16_t>(m, off + 8) == 0xD);  // level, high
      } else if (type == 4) {
        CHECK(m[off + 2] == 0xFF);
        CHECK(m[off + 5] == 1);  // LINT1
        ++nmis;
      }
      off += len;
    }
    CHECK(lapics == vcpus);
    CHECK(ioapics == 1);
    CHECK(nmis == 1);
    CHECK(overrides == std::vector<std::pair<uint8_t, uint32_t>>{{0, 2}, {9, 9}});
  }
}

// Local APIC entries of a MADT: (APIC id, enabled).
std::vector<std::pair<uint8_t, bool>> MadtLocalApics(const std::vector<uint8_t>& m) {
  std::vector<std::pair<uint8_t, bool>> out;
  for (size_t off = 44; off + 2 <= m.size() && m[off + 1] >= 2; off += m[off + 1]) {
    if (m[off] == 0) out.push_back({m[off + 3], (Peek<uint32_t>(m, off + 4) & 1) != 0});
  }
  return out;
}

std::string Iasl() {
  const char* iasl_env = std::getenv("IASL");
  return iasl_env && *iasl_env ? iasl_env : "iasl";
}

// The set's DSDT disassembled by iasl in `dir` (DSDT.dsl): its text.
std::string DisassembleDsdt(const AcpiTableSet& set, const TempDir& dir) {
  const AcpiTable& dsdt = Get(set, "DSDT");
  {
    std::ofstream out(dir.path / "DSDT.dat", std::ios::binary);
    out.write(reinterpret_cast<const char*>(dsdt.bytes.data()), static_cast<std::streamsize>(dsdt.bytes.size()));
  }
  auto [rc, out] = Run("cd " + dir.path.string() + " && " + Iasl() + " -d DSDT.dat");
  INFO(out);
  REQUIRE(rc == 0);
  return ReadText(dir.path / "DSDT.dsl");
}

// Whether the disassembled DSDT (DSDT.dsl in `dir`) compiles again.
bool RecompileDsdt(const TempDir& dir) {
  auto [rc, out] = Run("cd " + dir.path.string() + " && " + Iasl() + " -p recompiled DSDT.dsl");
  INFO(out);
  return rc == 0;
}

TEST_CASE("ACPI: CPU hotplug: CPUs absent at boot are disabled MADT entries, every other table as before") {
  auto set = BuildAcpiTableSet({.vcpu_count = 2, .possible_vcpus = 4}, boot_layout::kAcpiTablesAddr);
  REQUIRE(set.ok());
  CHECK(MadtLocalApics(Get(*set, "APIC").bytes) ==
        std::vector<std::pair<uint8_t, bool>>{{0, true}, {1, true}, {2, false}, {3, false}});
  // possible == vcpu_count (or 0) is the machine without hotplug: no Generic Event Device.
  auto plain = BuildAcpiTableSet({.vcpu_count = 2, .possible_vcpus = 2}, boot_layout::kAcpiTablesAddr);
  REQUIRE(plain.ok());
  CHECK(Get(*plain, "DSDT").bytes == Get(Build(2), "DSDT").bytes);
  CHECK(Get(*set, "DSDT").bytes.size() > Get(*plain, "DSDT").bytes.size());
  CHECK(!BuildAcpiTableSet({.vcpu_count = 2, .possible_vcpus = 1}, boot_layout::kAcpiTablesAddr).ok());
  CHECK(!BuildAcpiTableSet({.vcpu_count = 2, .possible_vcpus = 256}, boot_layout::kAcpiTablesAddr).ok());
  CHECK(BuildAcpiTableSet({.vcpu_count = 1, .possible_vcpus = 255}, boot_layout::kAcpiTablesAddr).ok());
  // NUMA domains must cover the possible CPUs, not only those present at boot.
  NumaTopology numa;
  numa.nodes = {{{0, 1}, 0}, {{2}, 0}};
  numa.distances = {10, 20, 20, 10};
  CHECK(!BuildAcpiTableSet({.vcpu_count = 2, .possible_vcpus = 4, .numa = numa, .ram = GuestMemory::Layout(256 << 20)},
                           boot_layout::kAcpiTablesAddr)
             .ok());
}

TEST_CASE("ACPI: CPU hotplug AML disassembles and recompiles with iasl, registers where the device has them") {
  auto set = BuildAcpiTableSet({.vcpu_count = 1, .possible_vcpus = 3}, boot_layout::kAcpiTablesAddr);
  REQUIRE(set.ok());
  TempDir dir;
  const std::string dsl = DisassembleDsdt(*set, dir);
  INFO(dsl);
  CHECK(dsl.find("**** ") == std::string::npos);
  CHECK(dsl.find("OperationRegion (CPHR, SystemIO, 0x0620, 0x65)") != std::string::npos);
  // The bitmaps at 0x00, 0x20 and 0x40, the id registers at 0x60..0x62 (platform.h).
  const size_t field = dsl.find("Field (CPHR, ByteAcc, NoLock, Preserve)");
  REQUIRE(field != std::string::npos);
  const size_t p2 = dsl.find("P002,   1", field);
  const size_t i0 = dsl.find("Offset (0x20)", field);
  const size_t r0 = dsl.find("Offset (0x40)", field);
  const size_t acks = dsl.find("Offset (0x60)", field);
  CHECK(p2 != std::string::npos);
  CHECK(i0 != std::string::npos);
  CHECK(r0 != std::string::npos);
  CHECK(acks != std::string::npos);
  CHECK((p2 < i0 && i0 < r0 && r0 < acks));
  CHECK(dsl.find("CINS,   8", acks) != std::string::npos);
  CHECK(dsl.find("CEJ0,   8", acks) != std::string::npos);
  CHECK(dsl.find("Device (C002)") != std::string::npos);
  CHECK(dsl.find("Method (_STA, 0, NotSerialized)") != std::string::npos);
  CHECK(dsl.find("If (P002)") != std::string::npos);
  CHECK(dsl.find("Method (_EJ0, 1, NotSerialized)") != std::string::npos);
  CHECK(dsl.find("CEJ0 = 0x02") != std::string::npos);
  CHECK(dsl.find("Method (CSCN, 0, Serialized)") != std::string::npos);
  CHECK(dsl.find("Notify (C002, One)") != std::string::npos);
  CHECK(dsl.find("Notify (C002, 0x03)") != std::string::npos);
  CHECK(dsl.find("ACPI0013") != std::string::npos);
  CHECK(dsl.find("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )") != std::string::npos);
  CHECK(dsl.find("Method (_EVT, 1, NotSerialized)") != std::string::npos);
  CHECK(RecompileDsdt(dir));
}

// Memory hotplug: three 128 MiB slots at 4 GiB under a 256 MiB guest (GuestMemory::HotplugBase).
AcpiMemoryHotplug ThreeSlots() { return {.base = 4ULL << 30, .slot_size = 128ULL << 20, .slots = 3}; }

TEST_CASE("ACPI: memory hotplug AML disassembles and recompiles with iasl: slots, ranges, registers, scan") {
  // Both kinds at once: one Generic Event Device runs both scans.
  auto set = BuildAcpiTableSet(
      {.vcpu_count = 1, .possible_vcpus = 2, .ram = GuestMemory::Layout(256ULL << 20), .memory_hotplug = ThreeSlots()},
      boot_layout::kAcpiTablesAddr);
  REQUIRE(set.ok());
  TempDir dir;
  const std::string dsl = DisassembleDsdt(*set, dir);
  INFO(dsl);
  CHECK(dsl.find("**** ") == std::string::npos);
  CHECK(dsl.find("OperationRegion (MPHR, SystemIO, 0x0690, 0x65)") != std::string::npos);
  const size_t field = dsl.find("Field (MPHR, ByteAcc, NoLock, Preserve)");
  REQUIRE(field != std::string::npos);
  const size_t a2 = dsl.find("A002,   1", field);
  const size_t n0 = dsl.find("N000,   1", field);
  const size_t g0 = dsl.find("G000,   1", field);
  const size_t acks = dsl.find("MINS,   8", field);
  CHECK((a2 != std::string::npos && n0 != std::string::npos && g0 != std::string::npos && acks != std::string::npos));
  CHECK((a2 < n0 && n0 < g0 && g0 < acks));
  CHECK(dsl.find("MEJ0,   8", acks) != std::string::npos);
  CHECK(dsl.find("MSEL,   8", acks) != std::string::npos);
  CHECK(dsl.find("MDOM,   8", acks) != std::string::npos);
  // Slot 2: a PNP0C80 memory device whose range is the third 128 MiB after 4 GiB.
  const size_t m2 = dsl.find("Device (M002)");
  REQUIRE(m2 != std::string::npos);
  CHECK(dsl.find("EisaId (\"PNP0C80\")", m2) != std::string::npos);
  const size_t qword =
      dsl.find("QWordMemory (ResourceConsumer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite", m2);
  REQUIRE(qword != std::string::npos);
  CHECK(dsl.find("0x0000000110000000, // Range Minimum", qword) != std::string::npos);
  CHECK(dsl.find("0x0000000117FFFFFF, // Range Maximum", qword) != std::string::npos);
  CHECK(dsl.find("0x0000000008000000, // Length", qword) != std::string::npos);
  CHECK(dsl.find("If (A002)", m2) != std::string::npos);
  CHECK(dsl.find("MEJ0 = 0x02", m2) != std::string::npos);
  CHECK(dsl.find("_PXM") == std::string::npos);  // no NUMA tables: no domain to name
  CHECK(dsl.find("Method (MSCN, 0, Serialized)") != std::string::npos);
  CHECK(dsl.find("Notify (M002, One)") != std::string::npos);
  CHECK(dsl.find("Notify (M002, 0x03)") != std::string::npos);
  CHECK(dsl.find("Notify (M000, One)") != std::string::npos);  // slot 0 is hot-pluggable, unlike CPU 0
  const size_t evt = dsl.find("Method (_EVT, 1, NotSerialized)");
  REQUIRE(evt != std::string::npos);
  CHECK(dsl.find("CSCN ()", evt) != std::string::npos);
  CHECK(dsl.find("MSCN ()", evt) != std::string::npos);
  CHECK(RecompileDsdt(dir));
}

TEST_CASE("ACPI: memory hotplug: the e820-visible RAM unchanged, the slots in the SRAT as hot-pluggable, limits") {
  // Without NUMA: no SRAT; with it: one hot-pluggable affinity entry for the whole area, in the slots' domain.
  auto flat =
      BuildAcpiTableSet({.vcpu_count = 1, .ram = GuestMemory::Layout(256ULL << 20), .memory_hotplug = ThreeSlots()},
                        boot_layout::kAcpiTablesAddr);
  REQUIRE(flat.ok());
  CHECK(flat->Find("SRAT") == nullptr);
  NumaTopology numa;
  numa.nodes = {{{0}, 192ULL << 20}, {{1}, 64ULL << 20}};
  numa.distances = {10, 27, 27, 10};
  AcpiMemoryHotplug hp = ThreeSlots();
  auto set =
      BuildAcpiTableSet({.vcpu_count = 2, .numa = numa, .ram = GuestMemory::Layout(256ULL << 20), .memory_hotplug = hp},
                        boot_layout::kAcpiTablesAddr);
  REQUIRE(set.ok());
  const AcpiTable& srat = Get(*set, "SRAT");
  const size_t last = srat.bytes.size() - 40;  // after two CPUs and two boot ranges
  CHECK(last == 48 + 2 * 16 + 2 * 40);
  CHECK(srat.bytes[last] == 1);
  CHECK(Peek<uint32_t>(srat.bytes, last + 2) == 0);
  CHECK(Peek<uint64_t>(srat.bytes, last + 8) == (4ULL << 30));
  CHECK(Peek<uint64_t>(srat.bytes, last + 16) == (384ULL << 20));
  CHECK(Peek<uint32_t>(srat.bytes, last + 28) == 3);  // enabled, hot pluggable
  const std::vector<uint8_t>& dsdt = Get(*set, "DSDT").bytes;
  CHECK(std::search(dsdt.begin(), dsdt.end(), std::begin("_PXM"), std::begin("_PXM") + 4) != dsdt.end());

  auto refused = [](AcpiMemoryHotplug m, NumaTopology t = {}) {
    return !BuildAcpiTableSet(
                {.vcpu_count = 2, .numa = t, .ram = GuestMemory::Layout(256ULL << 20), .memory_hotplug = m},
                boot_layout::kAcpiTablesAddr)
                .ok();
  };
  AcpiMemoryHotplug m = ThreeSlots();
  m.slots = 257;
  CHECK(refused(m));
  m = ThreeSlots();
  m.base = 128ULL << 20;  // inside the RAM
  CHECK(refused(m));
  m = ThreeSlots();
  m.slot_size = 64ULL << 20;  // under Linux's memory block
  CHECK(refused(m));
}

TEST_CASE(
    "ACPI: spare NUMA domains for edges attached later: a hot-pluggable SRAT range each, _PXM read from "
    "the hotplug controllers") {
  // Two boot domains (home: CPU 0 and 192M; an edge: CPU 1 and 64M), CPUs 2-3 and three slots may come later.
  NumaTopology numa;
  numa.nodes = {{{0, 2, 3}, 192ULL << 20}, {{1}, 64ULL << 20}};
  SetUniformDistances(numa, 27);
  AddSpareDomains(numa, 56);
  REQUIRE(numa.nodes.size() == 2 + kSpareNumaDomains);
  CHECK(numa.distance(0, 1) == 27);  // the boot domains keep theirs
  CHECK(numa.distance(0, 2) == 56);
  CHECK(numa.distance(3, 1) == 56);
  CHECK(numa.distance(3, 3) == 10);
  auto set = BuildAcpiTableSet({.vcpu_count = 2,
                                .possible_vcpus = 4,
                                .numa = numa,
                                .ram = GuestMemory::Layout(256ULL << 20),
                                .memory_hotplug = ThreeSlots()},
                               boot_layout::kAcpiTablesAddr);
  REQUIRE(set.ok());
  const AcpiTable& srat = Get(*set, "SRAT");
  // After four CPUs, two boot ranges and the slots' range (domain 0): one range per spare domain, 128 MiB each
  // from the first 1 GiB boundary above the slots (4G + 384M -> 5G), enabled and hot-pluggable.
  const size_t spare = 48 + 4 * 16 + 3 * 40;
  REQUIRE(srat.bytes.size() == spare + 2 * 40);
  CHECK(Peek<uint32_t>(srat.bytes, spare - 40 + 2) == 0);  // the slots: home's domain until _PXM says otherwise
  for (uint32_t k = 0; k < 2; ++k) {
    const size_t at = spare + k * 40;
    CHECK(srat.bytes[at] == 1);
    CHECK(Peek<uint32_t>(srat.bytes, at + 2) == 2 + k);
    CHECK(Peek<uint64_t>(srat.bytes, at + 8) == (5ULL << 30) + k * (128ULL << 20));
    CHECK(Peek<uint64_t>(srat.bytes, at + 16) == (128ULL << 20));
    CHECK(Peek<uint32_t>(srat.bytes, at + 28) == 3);
  }
  const AcpiTable& slit = Get(*set, "SLIT");
  CHECK(Peek<uint64_t>(slit.bytes, 36) == 4);
  TempDir dir;
  const std::string dsl = DisassembleDsdt(*set, dir);
  INFO(dsl);
  CHECK(dsl.find("**** ") == std::string::npos);
  // One serialized select-and-read per controller; every hot-pluggable CPU and slot's _PXM calls it.
  for (const char* method : {"Method (CPXM, 1, Serialized)", "Method (MPXM, 1, Serialized)"}) {
    CHECK(dsl.find(method) != std::string::npos);
  }
  CHECK(dsl.find("CSEL = Arg0") != std::string::npos);
  CHECK(dsl.find("Return (CDOM)") != std::string::npos);
  const size_t c3 = dsl.find("Device (C003)");
  REQUIRE(c3 != std::string::npos);
  CHECK(dsl.find("Return (CPXM (0x03))", c3) != std::string::npos);
  const size_t m1 = dsl.find("Device (M001)");
  REQUIRE(m1 != std::string::npos);
  CHECK(dsl.find("Return (MPXM (One))", m1) != std::string::npos);
  CHECK(RecompileDsdt(dir));
  // A spare domain holds nothing at boot, and comes after the others.
  NumaTopology bad = numa;
  bad.nodes[2].memory = 64ULL << 20;
  CHECK(!ValidateNumaTopology(bad, 4, 256ULL << 20).ok());
  bad = numa;
  std::swap(bad.nodes[1], bad.nodes[2]);
  CHECK(!ValidateNumaTopology(bad, 4, 256ULL << 20).ok());
}

TEST_CASE("ACPI: configuration limits") {
  CHECK(!BuildAcpiTableSet({.vcpu_count = 0}, boot_layout::kAcpiTablesAddr).ok());
  CHECK(!BuildAcpiTableSet({.vcpu_count = 256}, boot_layout::kAcpiTablesAddr).ok());
  CHECK(!BuildAcpiTableSet({.vcpu_count = 1, .virtio_mmio = {{0xd0000000, 0x200, 24}}}, boot_layout::kAcpiTablesAddr)
             .ok());
  CHECK(!BuildAcpiTableSet({.vcpu_count = 1, .virtio_mmio = {{0x100000000ULL, 0x200, 5}}},
                           boot_layout::kAcpiTablesAddr)
             .ok());
}

TEST_CASE("ACPI: written into guest memory where the kernel's RSDP scan finds it") {
  auto mem = GuestMemory::Create(32ULL << 20);
  REQUIRE(mem.ok());
  auto rsdp = BuildAcpiTables(*mem, {.vcpu_count = 2});
  REQUIRE(rsdp.ok());
  uint64_t found = 0;
  for (uint64_t a = platform::kBiosRomStart; a < platform::kBiosRomEnd; a += 16) {
    uint8_t sig[8];
    REQUIRE(mem->Read(a, sig).ok());
    if (std::memcmp(sig, "RSD PTR ", 8) == 0) {
      found = a;
      break;
    }
  }
  CHECK(found == *rsdp);
  std::vector<uint8_t> r(36);
  REQUIRE(mem->Read(found, r).ok());
  CHECK(AcpiChecksum(r) == 0);
}

TEST_CASE("AML encodings") {
  CHECK(aml::Method("_STA", 0, false, {aml::Return(aml::Integer(0x0F))}) ==
        aml::Bytes{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xA4, 0x0A, 0x0F});
  CHECK(aml::Method("CSCN", 0, true, {}) == aml::Bytes{0x14, 0x06, 'C', 'S', 'C', 'N', 0x08});
  CHECK(aml::Notify("C002", aml::Integer(3)) == aml::Bytes{0x86, 'C', '0', '0', '2', 0x0A, 0x03});
  CHECK(aml::Store(aml::Integer(2), "CEJ0") == aml::Bytes{0x70, 0x0A, 0x02, 'C', 'E', 'J', '0'});
  CHECK(aml::SystemIoRegion("CPHR", 0x620, 0x63) ==
        aml::Bytes{0x5B, 0x80, 'C', 'P', 'H', 'R', 0x01, 0x0B, 0x20, 0x06, 0x0A, 0x63});
  // Field widths count bits: 1 in one byte, 252 in two (0x40 | low nibble, then the rest).
  CHECK(aml::ByteField("CPHR", {{"P000", 1}, {"", 252}}) ==
        aml::Bytes{0x5B, 0x81, 0x0E, 'C', 'P', 'H', 'R', 0x01, 'P', '0', '0', '0', 0x01, 0x00, 0x4C, 0x0F});
  CHECK(aml::EisaIdValue("PNP0501") == 0x0105D041);
  CHECK(aml::EisaIdValue("PNP0A03") == 0x030AD041);
  CHECK(aml::PkgLength(10) == aml::Bytes{11});
  CHECK(aml::PkgLength(62) == aml::Bytes{63});
  CHECK(aml::PkgLength(63) == aml::Bytes{0x41, 0x04});  // 65 = 0x41: lead 0x40 | 1, then 0x04
  CHECK(aml::PkgLength(3000).size() == 2);  // total 3002 < 2^12
  CHECK(aml::PkgLength(3000)[0] >> 6 == 1);
  CHECK(aml::PkgLength(5000).size() == 3);  // total 5003 >= 2^12
  CHECK(aml::PkgLength(5000) == aml::Bytes{0x80 | (5003 & 0xF), (5003 >> 4) & 0xFF, 5003 >> 12});
  CHECK(aml::NameString("\\_SB_.COM1") == aml::Bytes{'\\', 0x2E, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'});
  CHECK(aml::NameString("_S5") == aml::Bytes{'_', 'S', '5', '_'});
  CHECK(aml::Integer(0) == aml::Bytes{0x00});
  CHECK(aml::Integer(0x3f8) == aml::Bytes{0x0B, 0xF8, 0x03});
  CHECK(aml::Integer(0x100000000ULL).size() == 9);
}

TEST_CASE("ACPI: SRAT and SLIT describe the NUMA domains, and only when there are several") {
  CHECK(Build(2).Find("SRAT") == nullptr);
  NumaTopology one;
  one.nodes = {{{0, 1}, 256ULL << 20}};
  one.distances = {10};
  CHECK(Build(2, {}, one).Find("SLIT") == nullptr);

  NumaTopology numa;
  numa.nodes = {{{0, 2}, 192ULL << 20}, {{1}, 64ULL << 20}};
  numa.distances = {10, 27, 27, 10};
  AcpiTableSet set = Build(3, {}, numa);
  const AcpiTable& srat = Get(set, "SRAT");
  CHECK(AcpiChecksum(srat.bytes) == 0);
  CHECK(srat.bytes[8] == 3);  // revision
  CHECK(Peek<uint32_t>(srat.bytes, 36) == 1);
  // Three Local APIC affinity entries in domain order, then one memory range per domain.
  size_t off = 48;
  const std::vector<std::pair<uint8_t, uint8_t>> cpus = {{0, 0}, {0, 2}, {1, 1}};  // (domain, APIC id)
  for (auto [domain, apic] : cpus) {
    CHECK(srat.bytes[off] == 0);
    CHECK(srat.bytes[off + 1] == 16);
    CHECK(srat.bytes[off + 2] == domain);
    CHECK(srat.bytes[off + 3] == apic);
    CHECK(Peek<uint32_t>(srat.bytes, off + 4) == 1);  // enabled
    off += 16;
  }
  const std::vector<std::tuple<uint32_t, uint64_t, uint64_t>> ranges = {{0, 0, 192ULL << 20},
                                                                       {1, 192ULL << 20, 64ULL << 20}};
  for (auto [domain, base, length] : ranges) {
    CHECK(srat.bytes[off] == 1);
    CHECK(srat.bytes[off + 1] == 40);
    CHECK(Peek<uint32_t>(srat.bytes, off + 2) == domain);
    CHECK(Peek<uint64_t>(srat.bytes, off + 8) == base);
    CHECK(Peek<uint64_t>(srat.bytes, off + 16) == length);
    CHECK(Peek<uint32_t>(srat.bytes, off + 28) == 1);
    off += 40;
  }
  CHECK(off == srat.bytes.size());
  const AcpiTable& slit = Get(set, "SLIT");
  CHECK(AcpiChecksum(slit.bytes) == 0);
  CHECK(Peek<uint64_t>(slit.bytes, 36) == 2);
  CHECK(std::vector<uint8_t>(slit.bytes.begin() + 44, slit.bytes.end()) == numa.distances);
  // Both are reachable from the XSDT.
  const AcpiTable& xsdt = Get(set, "XSDT");
  std::vector<uint64_t> entries;
  for (size_t o = 36; o < xsdt.bytes.size(); o += 8) entries.push_back(Peek<uint64_t>(xsdt.bytes, o));
  CHECK(std::find(entries.begin(), entries.end(), srat.addr) != entries.end());
  CHECK(std::find(entries.begin(), entries.end(), slit.addr) != entries.end());

  // A topology that does not fit is refused.
  numa.nodes[1].vcpus = {1, 2};
  auto bad = BuildAcpiTableSet({.vcpu_count = 3, .numa = numa, .ram = GuestMemory::Layout(256ULL << 20)},
                               boot_layout::kAcpiTablesAddr);
  REQUIRE(!bad.ok());
  CHECK(std::string(bad.status().message()).find("vCPU 2 is in domains 0 and 1") != std::string::npos);
}

// The DSDT and every other table must survive the reference disassembler, and the disassembled DSDT
// must compile again: that checks AML encoding, not just our own reading of it.
TEST_CASE("ACPI: iasl disassembles every table; the DSDT round-trips through the compiler") {
  const std::string iasl = Iasl();
  auto [vrc, vout] = Run(iasl + " -v");
  INFO(vout);
  REQUIRE(vrc == 0);  // acpica-tools must be installed (scripts/setup.sh)

  TempDir dir;
  // Three domains: vCPUs 0-1 with 3 GiB below the PCI hole and 1 GiB above it split 3.5 : 0.5, vCPU 2 alone
  // with no memory (an edge lending CPUs); so SRAT and SLIT are checked too.
  NumaTopology numa;
  numa.nodes = {{{0, 1}, 3584ULL << 20}, {{2}, 512ULL << 20}, {{3}, 0}};
  numa.distances = {10, 27, 56, 27, 10, 56, 56, 56, 10};
  AcpiTableSet set = Build(4, {{0xd0000000, 0x200, 16}, {0xd0000200, 0x200, 17}}, numa, 4096ULL << 20);
  REQUIRE(set.Find("SRAT") != nullptr);
  REQUIRE(set.Find("SLIT") != nullptr);
  for (const AcpiTable& t : set.tables) {
    if (t.signature == "RSDP") continue;  // not a table with a header: iasl -d refuses it (checked above)
    const std::filesystem::path bin = dir.path / (t.signature + ".dat");
    {
      std::ofstream out(bin, std::ios::binary);
      out.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
    }
    auto [rc, out] = Run("cd " + dir.path.string() + " && " + iasl + " -d " + bin.filename().string());
    INFO(t.signature << ": " << out);
    CHECK(rc == 0);
    const std::string dsl = ReadText(dir.path / (t.signature + ".dsl"));
    INFO(dsl);
    CHECK(!dsl.empty());
    CHECK(dsl.find("Incorrect") == std::string::npos);  // iasl flags bad checksums and lengths this way
    CHECK(dsl.find("**** ") == std::string::npos);      // and unknown/invalid fields
    if (t.signature == "DSDT") {
      CHECK(dsl.find("PNP0501") != std::string::npos);
      CHECK(dsl.find("IO (Decode16,") != std::string::npos);
      CHECK(dsl.find("0x03F8,") != std::string::npos);
      CHECK(dsl.find("IRQNoFlags ()") != std::string::npos);
      CHECK(dsl.find("{4}") != std::string::npos);
      CHECK(dsl.find("Name (\\_S5, Package (0x04)") != std::string::npos);
      CHECK(dsl.find("0x05,") != std::string::npos);
      CHECK(dsl.find("ACPI0007") != std::string::npos);
      CHECK(dsl.find("Device (C002)") != std::string::npos);
      CHECK(dsl.find("LNRO0005") != std::string::npos);
      CHECK(dsl.find("0xD0000200,") != std::string::npos);
      // virtio-mmio's line is edge-triggered (docs/DISKS.md): its EOI needs no IOAPIC, so PV EOI can end it.
      CHECK(dsl.find("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )") != std::string::npos);
      CHECK(dsl.find("Level") == std::string::npos);
      auto [crc, cout] = Run("cd " + dir.path.string() + " && " + iasl + " -p recompiled DSDT.dsl");
      INFO(cout);
      CHECK(crc == 0);
      CHECK(std::filesystem::exists(dir.path / "recompiled.aml"));
    }
    if (t.signature == "APIC") {
      CHECK(dsl.find("Processor Local APIC") != std::string::npos);
      CHECK(dsl.find("Interrupt Source Override") != std::string::npos);
    }
    if (t.signature == "FACP") {
      CHECK(dsl.find("Reset Register") != std::string::npos);
    }
    if (t.signature == "SRAT") {
      CHECK(dsl.find("Processor Local APIC/SAPIC Affinity") != std::string::npos);
      CHECK(dsl.find("Memory Affinity") != std::string::npos);
      CHECK(dsl.find("Base Address : 0000000100000000") != std::string::npos);  // the range above the hole
      CHECK(dsl.find("Address Length : 00000000C0000000") != std::string::npos);  // domain 0: all 3 GiB below
    }
    if (t.signature == "SLIT") {
      CHECK(dsl.find("Localities : 0000000000000003") != std::string::npos);
      CHECK(dsl.find("Locality   0 : 0A 1B 38") != std::string::npos);
      CHECK(dsl.find("Locality   2 : 38 38 0A") != std::string::npos);
    }
  }
}

}  // namespace
}  // namespace coalesce
