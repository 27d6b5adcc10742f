// Baseline for the exit-cost benchmark: the same port-write loop in a 16-bit guest, driven by the bare
// KVM_RUN loop (no bus, no devices, no interrupt injection). Prints the guest-measured TSC cycles per exit.
// Usage: raw_exit_loop [N]
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "hypervisor/kvm/kvm_system.h"
#include "hypervisor/memory/guest_memory.h"

using namespace coalesce;

int main(int argc, char** argv) {
  uint32_t n = argc > 1 ? static_cast<uint32_t>(std::strtoul(argv[1], nullptr, 0)) : 20000;
  auto kvm = KvmSystem::Open();
  if (!kvm.ok()) {
    std::fprintf(stderr, "raw_exit_loop: %s\n", kvm.status().ToString().c_str());
    return 1;
  }
  auto vm = kvm->CreateVm();
  auto mem = GuestMemory::Create(16 << 20);
  if (!vm.ok() || !mem.ok() || !mem->RegisterWith(*vm).ok()) {
    std::fprintf(stderr, "raw_exit_loop: VM setup failed\n");
    return 1;
  }
  // 16-bit code at 0x1000: rdtsc -> [0x2000]; N x (out 0x3ff, al); rdtsc -> [0x2008]; hlt.
  uint8_t code[] = {
      0x0f, 0x31,                          // rdtsc
      0x66, 0xa3, 0x00, 0x20,              // mov [0x2000], eax
      0x66, 0x89, 0x16, 0x04, 0x20,        // mov [0x2004], edx
      0xba, 0xff, 0x03,                    // mov dx, 0x3ff
      0x66, 0xb9, 0, 0, 0, 0,              // mov ecx, N
      0xee,                                // l: out dx, al
      0x66, 0x49,                          // dec ecx
      0x75, 0xfb,                          // jnz l
      0x0f, 0x31,                          // rdtsc
      0x66, 0xa3, 0x08, 0x20,              // mov [0x2008], eax
      0x66, 0x89, 0x16, 0x0c, 0x20,        // mov [0x200c], edx
      0xf4,                                // hlt
  };
  std::memcpy(code + 16, &n, 4);
  (void)mem->Write(0x1000, code);
  auto vcpu = vm->CreateVcpu(0);
  if (!vcpu.ok()) return 1;
  auto sregs = vcpu->GetSregs();
  sregs->cs.base = 0;
  sregs->cs.selector = 0;
  (void)vcpu->SetSregs(*sregs);
  kvm_regs regs{};
  regs.rip = 0x1000;
  regs.rflags = 2;
  (void)vcpu->SetRegs(regs);
  uint64_t exits = 0;
  for (;;) {
    auto e = vcpu->Run();
    if (!e.ok()) {
      std::fprintf(stderr, "raw_exit_loop: %s\n", e.status().ToString().c_str());
      return 1;
    }
    if (std::holds_alternative<exit::IoOut>(*e)) {
      exits++;
      continue;
    }
    if (std::holds_alternative<exit::Hlt>(*e)) break;
    std::fprintf(stderr, "raw_exit_loop: unexpected exit %s\n", ExitKindName(*e));
    return 1;
  }
  uint64_t t[2];
  (void)mem->Read(0x2000, {reinterpret_cast<uint8_t*>(t), sizeof(t)});
  uint64_t cycles = t[1] - t[0];
  std::printf("raw_exit_loop: exits=%lu cycles=%lu cycles_per_exit=%lu\n", static_cast<unsigned long>(exits),
              static_cast<unsigned long>(cycles), static_cast<unsigned long>(cycles / n));
  return exits == n ? 0 : 1;
}
