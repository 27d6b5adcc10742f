#include "hypervisor/boot/cpu_startup.h"

#include "hypervisor/base/status_macros.h"
#include "hypervisor/boot/boot_tables.h"

namespace coalesce {
namespace {

constexpr uint64_t kCr0Pe = 1ULL << 0;
constexpr uint64_t kCr0Et = 1ULL << 4;
constexpr uint64_t kCr0Nw = 1ULL << 29;
constexpr uint64_t kCr0Cd = 1ULL << 30;
constexpr uint64_t kCr0Pg = 1ULL << 31;
constexpr uint64_t kCr4Pae = 1ULL << 5;
constexpr uint64_t kEferLme = 1ULL << 8;
constexpr uint64_t kEferLma = 1ULL << 10;
constexpr uint64_t kRflagsReserved = 0x2;
// EDX after INIT holds the processor signature; family 6 like the CPUs KVM usually reports.
constexpr uint64_t kInitEdx = 0x600;

// TR and LDTR as after reset: a busy 32-bit TSS and an LDT, both present with base 0. VMX refuses
// protected-mode entry with an unusable TR, so it is set even though no guest here uses a TSS yet.
void SetResetSystemSegments(kvm_sregs& s) {
  s.tr = kvm_segment{};
  s.tr.limit = 0xFFFF;
  s.tr.type = 0xB;
  s.tr.present = 1;
  s.ldt = kvm_segment{};
  s.ldt.limit = 0xFFFF;
  s.ldt.type = 0x2;
  s.ldt.present = 1;
}

kvm_segment RealModeSegment(uint16_t selector, uint8_t type) {
  kvm_segment s{};
  s.selector = selector;
  s.base = static_cast<uint64_t>(selector) << 4;
  s.limit = 0xFFFF;
  s.type = type;
  s.present = 1;
  s.s = 1;
  return s;
}

}  // namespace

kvm_sregs BootEntrySregs(const BootEntry& entry, const kvm_sregs& current) {
  kvm_sregs s{};
  s.apic_base = current.apic_base;
  const bool long_mode = entry.mode == BootCpuMode::kLong64;
  s.cs = SegmentFromDescriptor(long_mode ? kGdtCode64 : kGdtCode32, entry.code_selector);
  kvm_segment data = SegmentFromDescriptor(kGdtData, entry.data_selector);
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  SetResetSystemSegments(s);
  s.gdt.base = entry.gdt_base;
  s.gdt.limit = entry.gdt_limit;
  s.idt.base = 0;
  s.idt.limit = 0;
  s.cr0 = kCr0Pe | kCr0Et;
  if (long_mode) {
    s.cr0 |= kCr0Pg;
    s.cr3 = entry.cr3;
    s.cr4 = kCr4Pae;
    s.efer = kEferLme | kEferLma;
  }
  return s;
}

kvm_regs BootEntryRegs(const BootEntry& entry) {
  kvm_regs r{};
  r.rip = entry.rip;
  r.rax = entry.rax;
  r.rbx = entry.rbx;
  r.rsi = entry.rsi;
  r.rsp = entry.rsp;
  r.rflags = kRflagsReserved;
  return r;
}

kvm_sregs StartupSregs(uint8_t sipi_vector, const kvm_sregs& current) {
  kvm_sregs s{};
  s.apic_base = current.apic_base;
  s.cs = RealModeSegment(static_cast<uint16_t>(sipi_vector) << 8, 0xB);
  kvm_segment data = RealModeSegment(0, 0x3);
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  SetResetSystemSegments(s);
  s.gdt.limit = 0xFFFF;
  s.idt.limit = 0xFFFF;
  s.cr0 = kCr0Cd | kCr0Nw | kCr0Et;
  return s;
}

kvm_regs StartupRegs() {
  kvm_regs r{};
  r.rflags = kRflagsReserved;
  r.rdx = kInitEdx;
  r.rip = 0;
  return r;
}

absl::Status ApplyBootEntry(const BootEntry& entry, VcpuFd& vcpu) {
  ASSIGN_OR_RETURN(kvm_sregs current, vcpu.GetSregs());
  RETURN_IF_ERROR(vcpu.SetSregs(BootEntrySregs(entry, current)));
  return vcpu.SetRegs(BootEntryRegs(entry));
}

absl::Status ApplyStartupState(uint8_t sipi_vector, VcpuFd& vcpu) {
  ASSIGN_OR_RETURN(kvm_sregs current, vcpu.GetSregs());
  RETURN_IF_ERROR(vcpu.SetSregs(StartupSregs(sipi_vector, current)));
  return vcpu.SetRegs(StartupRegs());
}

}  // namespace coalesce
