#include "tests/dsm/kvm_counter_guest.h"

#include <unistd.h>

#include <cstring>
#include <optional>
#include <variant>

#include "absl/strings/str_cat.h"
#include "hypervisor/kvm/kvm_system.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce::dsm::test {
namespace {

// as --32, .code16 (relative jumps only, so it runs at any address):
//   movl 0x3008,%ecx                 ; iterations
// acquire: movb $1,%al ; xchgb %al,0x2000 ; testb %al,%al ; jz got
// spin:    pause ; cmpb $0,0x2000 ; jne spin ; jmp acquire
// got:     incl 0x3000 ; movb $0,0x2000
//          movl 0x1ff0,%edx ; delay: decl %edx ; jnz delay   ; work outside the lock, so the VMs interleave
//          decl %ecx ; jnz acquire
//          outb %al,$0x10 ; hlt ; jmp start
constexpr uint8_t kGuestCode[] = {
    0x66, 0x8b, 0x0e, 0x08, 0x30, 0xb0, 0x01, 0x86, 0x06, 0x00, 0x20, 0x84, 0xc0, 0x74, 0x0b, 0xf3,
    0x90, 0x80, 0x3e, 0x00, 0x20, 0x00, 0x75, 0xf7, 0xeb, 0xeb, 0x66, 0xff, 0x06, 0x00, 0x30, 0xc6,
    0x06, 0x00, 0x20, 0x00, 0x66, 0x8b, 0x16, 0xf0, 0x1f, 0x66, 0x4a, 0x75, 0xfc, 0x66, 0x49, 0x75,
    0xd4, 0xe6, 0x10, 0xf4, 0xeb, 0xca};
constexpr uint64_t kGuestDelayAddr = 0x1ff0;  // on the code page, which both VMs only read
constexpr uint32_t kGuestDelayLoops = 100;  // small: real mode may be emulated instruction by instruction (PVM)

std::optional<GuestMemory> g_ram;  // one per node process

}  // namespace

absl::StatusOr<std::unique_ptr<DsmNode>> CreateGuestNode(int index, const DsmNodeConfig& config,
                                                         uint32_t iterations) {
  auto ram = GuestMemory::Create(kMinGuestMemory);
  if (!ram.ok()) return ram.status();
  g_ram.emplace(std::move(*ram));
  if (index == 0) {
    // Loaded like a VMM loads firmware, before the DSM takes over the memory.
    if (auto s = g_ram->Write(kGuestCodeAddr, kGuestCode); !s.ok()) return s;
    uint8_t count[4];
    std::memcpy(count, &iterations, sizeof(count));
    if (auto s = g_ram->Write(kGuestIterationsAddr, count); !s.ok()) return s;
    std::memcpy(count, &kGuestDelayLoops, sizeof(count));
    if (auto s = g_ram->Write(kGuestDelayAddr, count); !s.ok()) return s;
  }
  return DsmNode::Create(config, g_ram->memfd(), g_ram->host_base(), g_ram->size());
}

std::string RunCounterGuest(int index) {
  // A guest that never reaches its done port keeps KVM_RUN from returning; SIGALRM's default action then ends this
  // node process, which the parent reports as a failure.
  ::alarm(30);
  auto kvm = KvmSystem::Open();
  if (!kvm.ok()) return "FAIL " + kvm.status().ToString();
  auto vm = kvm->CreateVm();
  if (!vm.ok()) return "FAIL " + vm.status().ToString();
  if (auto s = g_ram->RegisterWith(*vm); !s.ok()) return "FAIL " + s.ToString();
  auto vcpu = vm->CreateVcpu(static_cast<uint32_t>(index));
  if (!vcpu.ok()) return "FAIL " + vcpu.status().ToString();
  auto sregs = vcpu->GetSregs();
  if (!sregs.ok()) return "FAIL " + sregs.status().ToString();
  for (kvm_segment* seg : {&sregs->cs, &sregs->ds, &sregs->es, &sregs->ss, &sregs->fs, &sregs->gs}) {
    seg->base = 0;
    seg->selector = 0;
  }
  if (auto s = vcpu->SetSregs(*sregs); !s.ok()) return "FAIL " + s.ToString();
  kvm_regs regs{};
  regs.rip = kGuestCodeAddr;
  regs.rflags = 2;
  regs.rsp = 0x8000;
  if (auto s = vcpu->SetRegs(regs); !s.ok()) return "FAIL " + s.ToString();
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  uint64_t exits = 0;
  while (absl::Now() < deadline) {
    auto e = vcpu->Run();
    if (!e.ok()) return "FAIL KVM_RUN: " + e.status().ToString();
    ++exits;
    if (auto* out = std::get_if<exit::IoOut>(&*e); out != nullptr && out->port == kGuestDonePort) {
      return absl::StrCat("ok after ", exits, " exits");
    }
    if (std::holds_alternative<exit::Interrupted>(*e)) continue;
    if (auto* ie = std::get_if<exit::InternalError>(&*e); ie != nullptr) {
      auto r = vcpu->GetRegs();
      return absl::StrCat("FAIL internal error suberror ", ie->suberror, " at rip ",
                          r.ok() ? absl::StrCat(absl::Hex(r->rip)) : "?");
    }
    return absl::StrCat("FAIL unexpected exit ", ExitKindName(*e));
  }
  return "FAIL guest did not finish in 60 s";
}

}  // namespace coalesce::dsm::test
