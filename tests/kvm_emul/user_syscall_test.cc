// Does `syscall` from guest user mode enter the guest kernel? Every Linux process depends on it. On
// hardware-virtualized KVM the CPU does it. On PVM (software virtualization) the transition is PVM's job:
// with Debian's kernel the first system call of /init stayed in user mode at LSTAR and faulted
// (docs/BOOT.md). This test pins that down with a 30-instruction guest, independent of Linux: on a host
// with VMX/SVM the syscall must reach LSTAR at CPL0; on a host without them the observed PVM outcome (a
// user-mode #PF at LSTAR) is reported as a warning, and anything else fails.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "hypervisor/emul/instruction_completer.h"
#include "tests/kvm_emul/long_mode_harness.h"

extern "C" const uint8_t usc_kernel_start[], usc_kernel_end[], usc_lstar[], usc_pf[], usc_user_start[],
    usc_user_end[];

namespace coalesce {
namespace {

using namespace kvm_test;  // NOLINT: the harness is this test's vocabulary

constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000, kPt = 0x4000, kGdt = 0x5000, kTss = 0x6000,
                   kIdt = 0x7000, kResult = 0x8000, kKernelCode = 0x10000, kUserCode = 0x11000;

uint64_t KernelAddress(const uint8_t* symbol) { return kKernelCode + static_cast<uint64_t>(symbol - usc_kernel_start); }

bool HostHasHardwareVirtualization() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0) return line.find(" vmx") != std::string::npos || line.find(" svm") != std::string::npos;
  }
  return false;
}

void BuildGuest(const GuestMemory& mem) {
  // Identity map of the first 2 MiB in 4 KiB pages. Upper levels allow user access; of the leaves only the
  // user code page and the user stack pages (0x70000-0x71fff) have U set.
  Put<uint64_t>(mem, kPml4, kPdpt | 0x7);
  Put<uint64_t>(mem, kPdpt, kPd | 0x7);
  Put<uint64_t>(mem, kPd, kPt | 0x7);
  for (uint64_t page = 0; page < 512; ++page) {
    const uint64_t addr = page << 12;
    const bool user = addr == kUserCode || addr == 0x70000 || addr == 0x71000;
    Put<uint64_t>(mem, kPt + 8 * page, addr | 0x3 | (user ? 0x4 : 0));
  }
  // GDT: null, kernel code 0x08, kernel data 0x10, user data 0x18 (0x1b), user code 0x20 (0x23), TSS 0x28.
  Put<uint64_t>(mem, kGdt + 0x08, 0x00209a0000000000ull);
  Put<uint64_t>(mem, kGdt + 0x10, 0x00cf92000000ffffull);
  Put<uint64_t>(mem, kGdt + 0x18, 0x00cff2000000ffffull);
  Put<uint64_t>(mem, kGdt + 0x20, 0x0020fa0000000000ull);
  Put<uint64_t>(mem, kGdt + 0x28, 0x0000890000000067ull | ((kTss & 0xffffff) << 16));
  Put<uint64_t>(mem, kTss + 4, 0x90000);  // RSP0: the kernel stack for exceptions from user mode
  // IDT: #PF (14) and #GP (13, same handler: it records the frame the same way).
  for (uint64_t v : {13ull, 14ull}) {
    const uint64_t handler = KernelAddress(usc_pf);
    Put<uint64_t>(mem, kIdt + 16 * v,
                  (handler & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((handler >> 16 & 0xffff) << 48));
    Put<uint64_t>(mem, kIdt + 16 * v + 8, handler >> 32);
  }
  REQUIRE(mem.Write(kKernelCode, {usc_kernel_start, static_cast<size_t>(usc_kernel_end - usc_kernel_start)}).ok());
  REQUIRE(mem.Write(kUserCode, {usc_user_start, static_cast<size_t>(usc_user_end - usc_user_start)}).ok());
}

TEST_CASE("syscall from guest user mode enters the guest kernel (or fails the known PVM way)") {
  if (!KvmUsable()) return;
  KvmRig rig = MakeRig();
  GuestMemory* mem = &*rig.mem;
  VcpuFd* vcpu = &*rig.vcpu;
  BuildGuest(*mem);

  auto sregs = vcpu->GetSregs();
  REQUIRE(sregs.ok());
  const kvm_sregs s = LongModeSregs(*sregs, {.cr3 = kPml4, .efer = 0x501 /* + SCE */, .gdt = kGdt,
                                              .gdt_limit = 0x37, .idt = kIdt, .tss = kTss, .tss_selector = 0x28});
  REQUIRE(vcpu->SetSregs(s).ok());
  // STAR: kernel CS 0x08 (SS 0x10); SYSRET base 0x10 (user CS 0x23, SS 0x1b). LSTAR: the entry. SFMASK: IF.
  const uint64_t lstar = KernelAddress(usc_lstar);
  REQUIRE(vcpu->SetMsrs({{0xc0000081, (0x10ull << 48) | (0x08ull << 32)}, {0xc0000082, lstar},
                         {0xc0000084, 0x200}}).ok());
  kvm_regs r{};
  r.rip = kKernelCode;
  r.rflags = 0x2;
  REQUIRE(vcpu->SetRegs(r).ok());

  REQUIRE(RunUntilHlt(*vcpu, *mem, 30, 1000).halted);
  const uint64_t outcome = Get<uint64_t>(*mem, kResult);
  const uint64_t user_next = kUserCode + 7;  // after `mov $42, %eax; syscall`
  if (outcome == 0x5ca11) {
    CHECK(Get<uint64_t>(*mem, kResult + 8) == 0x08);           // entered at CPL0 with the kernel CS
    CHECK(Get<uint64_t>(*mem, kResult + 0x28) == user_next);   // RCX = the user RIP to return to
    return;
  }
  REQUIRE(outcome == 0xbad);
  const uint64_t fault_rip = Get<uint64_t>(*mem, kResult + 0x18), fault_cs = Get<uint64_t>(*mem, kResult + 0x20);
  INFO("fault: error " << Get<uint64_t>(*mem, kResult + 0x10) << " RIP 0x" << std::hex << fault_rip << " CS 0x"
                       << fault_cs);
  // The outcome seen on PVM: the CPU went to LSTAR but stayed at CPL3, so fetching the supervisor entry faults.
  const bool pvm_outcome = fault_rip == lstar && (fault_cs & 3) == 3;
  REQUIRE(pvm_outcome);
  REQUIRE_FALSE(HostHasHardwareVirtualization());
  WARN("this KVM (software-virtualized) does not switch to the guest kernel on a user-mode syscall: it "
       "faulted at LSTAR with CS 0x" << std::hex << fault_cs << " (docs/BOOT.md)");
}

}  // namespace
}  // namespace coalesce
