// What the KVM-tier tests with hand-built long-mode guests share: a vCPU on a 16 MiB guest with the host's
// supported CPUID, guest-physical reads and writes, flat 64-bit segments, the special registers of a
// long-mode kernel, and the /dev/kvm and alarm conventions of the kvm suite.
#pragma once

#include <linux/kvm.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include "hypervisor/emul/instruction_completer.h"
#include "hypervisor/kvm/kvm_system.h"
#include "hypervisor/memory/guest_memory.h"
#include "tests/kvm_required.h"

namespace coalesce::kvm_test {

template <typename T>
void Put(const GuestMemory& mem, uint64_t gpa, T value) {
  REQUIRE(mem.Write(gpa, {reinterpret_cast<const uint8_t*>(&value), sizeof(T)}).ok());
}
template <typename T>
T Get(const GuestMemory& mem, uint64_t gpa) {
  T value{};
  REQUIRE(mem.Read(gpa, {reinterpret_cast<uint8_t*>(&value), sizeof(T)}).ok());
  return value;
}

// A flat segment: 64-bit code, or data.
inline kvm_segment FlatSegment(uint16_t selector, uint8_t type, bool code) {
  kvm_segment s{};
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.s = 1;
  s.g = 1;
  s.l = code ? 1 : 0;
  s.db = code ? 0 : 1;
  return s;
}

// Where the test put its tables and what it wants in CR4/EFER. Code 0x08, data 0x10, 32 IDT gates.
struct LongModeLayout {
  uint64_t cr3 = 0;
  uint64_t cr4 = 0x620;  // OSXMMEXCPT OSFXSR PAE
  uint64_t efer = 0x500;  // LMA LME
  uint64_t gdt = 0;
  uint16_t gdt_limit = 0;
  uint64_t idt = 0;
  uint64_t tss = 0;
  uint16_t tss_selector = 0;
};

inline kvm_sregs LongModeSregs(kvm_sregs s, const LongModeLayout& l) {
  s.cr0 = 0x80050033;  // PG WP NE ET MP PE
  s.cr3 = l.cr3;
  s.cr4 = l.cr4;
  s.efer = l.efer;
  s.cs = FlatSegment(0x08, 0xb, true);
  s.ds = s.es = s.fs = s.gs = s.ss = FlatSegment(0x10, 0x3, false);
  s.tr = kvm_segment{};
  s.tr.base = l.tss;
  s.tr.limit = 0x67;
  s.tr.selector = l.tss_selector;
  s.tr.type = 0xb;
  s.tr.present = 1;
  s.ldt = kvm_segment{};
  s.ldt.type = 0x2;
  s.ldt.unusable = 1;
  s.gdt.base = l.gdt;
  s.gdt.limit = l.gdt_limit;
  s.idt.base = l.idt;
  s.idt.limit = 32 * 16 - 1;
  return s;
}

// One VM with 16 MiB of RAM and vCPU 0, which sees the host's supported CPUID (XSAVE etc. must be visible
// for KVM to accept XCR0).
struct KvmRig {
  std::optional<KvmSystem> kvm;
  std::optional<VmFd> vm;
  std::optional<GuestMemory> mem;
  std::optional<VcpuFd> vcpu;
};

inline KvmRig MakeRig() {
  KvmRig rig;
  auto kvm = KvmSystem::Open();
  REQUIRE(kvm.ok());
  rig.kvm.emplace(*std::move(kvm));
  auto vm = rig.kvm->CreateVm();
  REQUIRE(vm.ok());
  rig.vm.emplace(*std::move(vm));
  auto mem = GuestMemory::Create(16 << 20);
  REQUIRE(mem.ok());
  rig.mem.emplace(*std::move(mem));
  REQUIRE(rig.mem->RegisterWith(*rig.vm).ok());
  REQUIRE(rig.vm->SetTssAddr(0xfffbd000).ok());
  auto vcpu = rig.vm->CreateVcpu(0);
  REQUIRE(vcpu.ok());
  rig.vcpu.emplace(*std::move(vcpu));
  auto supported = rig.kvm->SupportedCpuid();
  REQUIRE(supported.ok());
  REQUIRE(rig.vcpu->SetCpuid(*supported).ok());
  return rig;
}

// True when /dev/kvm is usable; else the test fails with the reason (tests/kvm_required.h: never a skip).
inline bool KvmUsable() {
  const std::string problem = coalesce::testing::KvmProblem();
  if (problem.empty()) return true;
  FAIL(problem);
  return false;
}

struct GuestRun {
  bool halted = false;
  std::map<std::string, int> completed;  // emulation failures completed in user space, by mnemonic
  uint64_t continued = 0;                // instructions completed after them in the same exits
};

// Runs the vCPU until HLT, completing every emulation failure as the VMM does. Any other exit fails the
// test with RIP; so does a hung guest, which the alarm interrupts (SIGALRM: EINTR -> exit::Interrupted).
inline GuestRun RunUntilHlt(VcpuFd& vcpu, const GuestMemory& mem, unsigned alarm_seconds, int max_exits) {
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sigaction(SIGALRM, &sa, nullptr);
  alarm(alarm_seconds);
  GuestRun run;
  for (int exits = 0; exits < max_exits && !run.halted; ++exits) {
    auto e = vcpu.Run();
    REQUIRE(e.ok());
    if (std::holds_alternative<exit::Hlt>(*e)) {
      run.halted = true;
    } else if (auto* err = std::get_if<exit::InternalError>(&*e)) {
      auto done = CompleteFailedInstruction(vcpu, mem, *err);
      INFO(done.status().ToString());
      REQUIRE(done.ok());
      run.completed[done->mnemonic]++;
      run.continued += done->continued;
    } else {
      auto regs = vcpu.GetRegs();
      alarm(0);
      FAIL("unexpected exit " << ExitKindName(*e) << " at RIP 0x" << std::hex << (regs.ok() ? regs->rip : 0));
    }
  }
  alarm(0);
  return run;
}

}  // namespace coalesce::kvm_test
