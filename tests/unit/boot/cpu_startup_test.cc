#include "hypervisor/boot/cpu_startup.h"

#include <catch2/catch.hpp>

#include "hypervisor/boot/boot_layout.h"
#include "hypervisor/boot/boot_tables.h"

namespace coalesce {
namespace {

BootEntry LongModeEntry() {
  BootEntry e;
  e.mode = BootCpuMode::kLong64;
  e.rip = 0x1000200;
  e.rsi = 0x7000;
  e.rsp = 0x9000;
  e.gdt_base = boot_layout::kGdtAddr;
  e.gdt_limit = kBootGdtLimit;
  e.code_selector = 0x10;
  e.data_selector = 0x18;
  e.cr3 = 0x9000;
  return e;
}

TEST_CASE("Long-mode boot entry: paging on, LMA, L-bit code segment, __BOOT_CS/__BOOT_DS") {
  kvm_sregs current{};
  current.apic_base = 0xfee00900;
  kvm_sregs s = BootEntrySregs(LongModeEntry(), current);
  CHECK(s.apic_base == 0xfee00900);  // kept
  CHECK((s.cr0 & 0x80000001) == 0x80000001);
  CHECK(s.cr3 == 0x9000);
  CHECK((s.cr4 & 0x20) != 0);
  CHECK(s.efer == 0x500);
  CHECK(s.cs.selector == 0x10);
  CHECK(s.cs.l == 1);
  CHECK(s.cs.db == 0);
  CHECK(s.cs.present == 1);
  CHECK(s.cs.type == 0xB);
  for (const kvm_segment* seg : {&s.ds, &s.es, &s.ss, &s.fs, &s.gs}) {
    CHECK(seg->selector == 0x18);
    CHECK(seg->base == 0);
    CHECK(seg->limit == 0xFFFFFFFF);
    CHECK(seg->type == 0x3);
  }
  CHECK(s.gdt.base == boot_layout::kGdtAddr);
  CHECK(s.gdt.limit == 31);
  kvm_regs r = BootEntryRegs(LongModeEntry());
  CHECK(r.rip == 0x1000200);
  CHECK(r.rsi == 0x7000);
  CHECK(r.rflags == 0x2);  // interrupts disabled
}

TEST_CASE("Protected-mode boot entry: flat 32-bit segments, paging off, Multiboot registers") {
  BootEntry e;
  e.mode = BootCpuMode::kProtected32;
  e.rip = 0x100010;
  e.rax = 0x2BADB002;
  e.rbx = 0x10000;
  e.code_selector = 0x10;
  e.data_selector = 0x18;
  kvm_sregs s = BootEntrySregs(e, kvm_sregs{});
  CHECK(s.cr0 == 0x11);  // PE | ET, no PG
  CHECK(s.efer == 0);
  CHECK(s.cr4 == 0);
  CHECK(s.cs.db == 1);
  CHECK(s.cs.l == 0);
  CHECK(s.cs.base == 0);
  CHECK(s.cs.limit == 0xFFFFFFFF);
  CHECK(s.cs.g == 1);
  kvm_regs r = BootEntryRegs(e);
  CHECK(r.rax == 0x2BADB002);
  CHECK(r.rbx == 0x10000);
  CHECK(r.rip == 0x100010);
}

TEST_CASE("SIPI startup state: real mode at vector << 12") {
  kvm_sregs current{};
  current.apic_base = 0xfee00800;
  kvm_sregs s = StartupSregs(0x9A, current);
  CHECK(s.cs.selector == 0x9A00);
  CHECK(s.cs.base == 0x9A000);
  CHECK(s.cs.limit == 0xFFFF);
  CHECK((s.cr0 & 1) == 0);
  CHECK(s.efer == 0);
  CHECK(s.ds.base == 0);
  CHECK(s.ds.selector == 0);
  CHECK(s.apic_base == 0xfee00800);
  kvm_regs r = StartupRegs();
  CHECK(r.rip == 0);
  CHECK(r.rflags == 0x2);
}

TEST_CASE("Segment state decoded from GDT descriptors matches what the CPU would load") {
  kvm_segment d = SegmentFromDescriptor(kGdtData, 0x18);
  CHECK(d.base == 0);
  CHECK(d.limit == 0xFFFFFFFF);
  CHECK(d.db == 1);
  CHECK(d.s == 1);
  CHECK(d.dpl == 0);
  kvm_segment c = SegmentFromDescriptor(0x00409A123456FFFFULL, 0x8);  // byte-granular, base 0x123456
  CHECK(c.base == 0x123456);
  CHECK(c.limit == 0xFFFF);
  CHECK(c.g == 0);
  CHECK(c.type == 0xA);
}

}  // namespace
}  // namespace coalesce
