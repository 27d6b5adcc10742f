// The entry states on a real vCPU: tiny guests loaded by the real loaders report their registers through
// port 0x500. Needs /dev/kvm (suite 'kvm'); a missing /dev/kvm is a failure, never a skip.
#include <elf.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <optional>

#include "hypervisor/boot/cpu_startup.h"
#include "hypervisor/boot/e820_map.h"
#include "hypervisor/boot/linux_loader.h"
#include "hypervisor/boot/multiboot_loader.h"
#include "hypervisor/kvm/kvm_system.h"
#include "hypervisor/kvm/vm_fd.h"
#include "tests/kvm_required.h"
#include "tests/unit/boot/fake_bzimage.h"

namespace coalesce {
namespace {

constexpr uint16_t kReportPort = 0x500;

struct Vm {
  Vm() {
    const std::string problem = testing::KvmProblem();
    INFO(problem);
    REQUIRE(problem.empty());
    auto kvm_or = KvmSystem::Open();
    INFO(kvm_or.status().ToString());
    REQUIRE(kvm_or.ok());
    kvm.emplace(std::move(*kvm_or));
    auto vm_or = kvm->CreateVm();
    REQUIRE(vm_or.ok());
    vm.emplace(std::move(*vm_or));
    (void)vm->SetTssAddr(0xfffbd000);  // VMX real mode needs these; other KVMs may refuse them
    (void)vm->SetIdentityMapAddr(0xfffbc000);
    auto mem_or = GuestMemory::Create(64ULL << 20);
    REQUIRE(mem_or.ok());
    mem.emplace(std::move(*mem_or));
    REQUIRE(mem->RegisterWith(*vm).ok());
    e820 = E820Map::ForRegions(mem->regions()).Entries();
  }
  VcpuFd NewVcpu(uint32_t id) {
    auto v = vm->CreateVcpu(id);
    REQUIRE(v.ok());
    return std::move(*v);
  }
  std::optional<KvmSystem> kvm;
  std::optional<VmFd> vm;
  std::optional<GuestMemory> mem;
  std::vector<E820Entry> e820;
};

// Runs until HLT; returns every value written to kReportPort. Any other exit fails the test.
std::vector<uint32_t> RunToHlt(VcpuFd& vcpu) {
  std::vector<uint32_t> reports;
  for (int i = 0; i < 1000; ++i) {
    auto ex = vcpu.Run();
    REQUIRE(ex.ok());
    if (std::holds_alternative<exit::Hlt>(*ex)) return reports;
    if (std::holds_alternative<exit::Interrupted>(*ex)) continue;
    auto* out = std::get_if<exit::IoOut>(&*ex);
    if (out == nullptr || out->port != kReportPort) {
      auto regs = vcpu.GetRegs();
      FAIL("unexpected exit " << ExitKindName(*ex) << " at rip 0x" << std::hex << (regs.ok() ? regs->rip : 0));
    }
    uint32_t v = 0;
    std::memcpy(&v, out->data.data(), std::min<size_t>(out->data.size(), 4));
    reports.push_back(v);
  }
  FAIL("guest did not halt");
  return reports;
}

std::vector<uint8_t> MultibootStub() {
  std::vector<uint8_t> b(0x2000, 0);
  Elf32_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS32;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_386;
  eh.e_entry = 0x100020;
  eh.e_phoff = sizeof(eh);
  eh.e_phentsize = sizeof(Elf32_Phdr);
  eh.e_phnum = 1;
  std::memcpy(b.data(), &eh, sizeof(eh));
  Elf32_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x1000;
  ph.p_vaddr = ph.p_paddr = 0x100000;
  ph.p_filesz = ph.p_memsz = 0x1000;
  std::memcpy(b.data() + sizeof(eh), &ph, sizeof(ph));
  const uint32_t header[3] = {0x1BADB002, 0, 0u - 0x1BADB002};
  std::memcpy(&b[0x1000], header, sizeof(header));
  const uint8_t code[] = {
      0xBA, 0x00, 0x05, 0x00, 0x00,  // mov edx, 0x500
      0xEF,                          // out dx, eax          (EAX: the magic)
      0x89, 0xD8, 0xEF,              // mov eax, ebx; out    (EBX: info address)
      0x8B, 0x03, 0xEF,              // mov eax, [ebx]; out  (info flags)
      0x8B, 0x43, 0x10,              // mov eax, [ebx+16]    (cmdline pointer)
      0x8B, 0x00, 0xEF,              // mov eax, [eax]; out  (first 4 bytes of the command line)
      0x0F, 0x20, 0xC0, 0xEF,        // mov eax, cr0; out
      0x8C, 0xC8, 0xEF,              // mov eax, cs; out
      0x8C, 0xD8, 0xEF,              // mov eax, ds; out
      0xF4,                          // hlt
  };
  std::memcpy(&b[0x1020], code, sizeof(code));
  return b;
}

TEST_CASE("KVM: Multiboot entry state") {
  Vm vm;
  VcpuFd vcpu = vm.NewVcpu(0);
  auto r = LoadMultiboot(*vm.mem, MultibootStub(), {.cmdline = "abcd efg", .e820 = vm.e820});
  REQUIRE(r.ok());
  REQUIRE(ApplyBootEntry(r->entry, vcpu).ok());
  auto reports = RunToHlt(vcpu);
  REQUIRE(reports.size() == 7);
  CHECK(reports[0] == 0x2BADB002);
  CHECK(reports[1] == r->info_addr);
  CHECK(reports[2] == (kMbInfoMemory | kMbInfoCmdline | kMbInfoMemoryMap | kMbInfoBootLoaderName));
  CHECK(reports[3] == 0x64636261);  // "abcd"
  CHECK((reports[4] & 0x80000001) == 0x1);  // protected mode, paging off
  CHECK((reports[5] & 0xFFFF) == 0x10);
  CHECK((reports[6] & 0xFFFF) == 0x18);
}

TEST_CASE("KVM: Linux 64-bit entry state") {
  Vm vm;
  VcpuFd vcpu = vm.NewVcpu(0);
  testing::FakeBzImage k;
  k.code = {
      0xBA, 0x00, 0x05, 0x00, 0x00,              // mov edx, 0x500
      0x89, 0xF0, 0xEF,                          // mov eax, esi; out   (zero page)
      0x8B, 0x86, 0x02, 0x02, 0x00, 0x00, 0xEF,  // mov eax, [rsi+0x202]; out  ("HdrS")
      0x0F, 0x20, 0xC0, 0xEF,                    // mov rax, cr0; out
      0x0F, 0x20, 0xE0, 0xEF,                    // mov rax, cr4; out
      0xB9, 0x80, 0x00, 0x00, 0xC0, 0x0F, 0x32,  // mov ecx, EFER; rdmsr (EDX:EAX)
      0xBA, 0x00, 0x05, 0x00, 0x00, 0xEF,        // mov edx, 0x500; out
      0x8C, 0xC8, 0xEF,                          // mov eax, cs; out
      0x8C, 0xD0, 0xEF,                          // mov eax, ss; out
      0x8B, 0x04, 0x25, 0x00, 0xF0, 0xFF, 0x03, 0xEF,  // mov eax, [0x3fff000]; out (identity map)
      0xF4,                                      // hlt
  };
  const uint32_t marker = 0xC0FFEE11;
  REQUIRE(vm.mem->Write(0x3fff000, {reinterpret_cast<const uint8_t*>(&marker), 4}).ok());
  auto r = LoadLinux(*vm.mem, k.Build(), {.cmdline = "console=ttyS0", .initrd = {}, .e820 = vm.e820});
  REQUIRE(r.ok());
  REQUIRE(ApplyBootEntry(r->entry, vcpu).ok());
  auto reports = RunToHlt(vcpu);
  REQUIRE(reports.size() == 8);
  CHECK(reports[0] == 0x7000);
  CHECK(reports[1] == 0x53726448);  // "HdrS"
  CHECK((reports[2] & 0x80000001) == 0x80000001);
  CHECK((reports[3] & 0x20) == 0x20);  // PAE
  CHECK((reports[4] & 0x500) == 0x500);  // LME | LMA
  CHECK((reports[5] & 0xFFFF) == 0x10);  // __BOOT_CS
  CHECK((reports[6] & 0xFFFF) == 0x18);  // __BOOT_DS
  CHECK(reports[7] == marker);
}

TEST_CASE("KVM: SIPI startup state runs real-mode code at vector << 12") {
  Vm vm;
  VcpuFd vcpu = vm.NewVcpu(0);
  const uint8_t trampoline[] = {
      0xBA, 0x00, 0x05,  // mov dx, 0x500
      0x8C, 0xC8,        // mov ax, cs
      0xEF,              // out dx, ax
      0xE8, 0x00, 0x00,  // call next (pushes the 16-bit IP of the next instruction: 0x9)
      0x58,              // pop ax
      0xEF,              // out dx, ax
      0xF4,              // hlt
  };
  REQUIRE(vm.mem->Write(0x9A000, trampoline).ok());
  REQUIRE(ApplyStartupState(0x9A, vcpu).ok());
  auto reports = RunToHlt(vcpu);
  REQUIRE(reports.size() == 2);
  CHECK((reports[0] & 0xFFFF) == 0x9A00);
  CHECK((reports[1] & 0xFFFF) == 0x0009);  // IP started at 0
}

}  // namespace
}  // namespace coalesce
