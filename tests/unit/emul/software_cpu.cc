#include "tests/unit/emul/software_cpu.h"

#include <algorithm>
#include <cstring>

namespace coalesce {

SoftwareCpu::SoftwareCpu(uint64_t base_address, uint64_t size)
    : layout(XsaveLayout::FromHostCpuid()), memory(size, 0), base(base_address) {
  regs.cr0 = kCr0Pe | kCr0Pg | kCr0Wp;
  regs.cr4 = kCr4Pae | kCr4Osfxsr | kCr4Osxsave;
  regs.efer = (1u << 8) | (1u << 10);
}

absl::Status SoftwareCpu::SetRegisters(const RegisterState& r) {
  regs.gpr = r.gpr;
  regs.rip = r.rip;
  regs.rflags = r.rflags;
  ++register_writes;
  return absl::OkStatus();
}

absl::Status SoftwareCpu::SetExtendedState(const ExtendedState& s) {
  extended.image = s.image;
  ++state_writes;
  return absl::OkStatus();
}

std::optional<Fault> SoftwareCpu::Check(uint64_t linear, uint64_t length, MemoryAccess access) const {
  const uint64_t first = linear >> 12, last = (linear + (length ? length - 1 : 0)) >> 12;
  for (uint64_t page = first; page <= last; ++page) {
    const uint64_t addr = std::max(linear, page << 12);
    const uint32_t code = (access.write ? kPfWrite : 0) | (access.user ? kPfUser : 0);
    if (addr < base || addr - base >= memory.size()) return Fault::PageFault(addr, code);
    auto it = pages.find(page);
    const PagePermission perm = it == pages.end() ? PagePermission{} : it->second;
    if (!perm.present) return Fault::PageFault(addr, code);
    if (access.write && !perm.writable) return Fault::PageFault(addr, code | kPfPresent);
  }
  return std::nullopt;
}

AccessResult SoftwareCpu::Read(uint64_t linear, std::span<uint8_t> out, MemoryAccess access) {
  if (auto f = Check(linear, out.size(), access)) return f;
  std::memcpy(out.data(), At(linear), out.size());
  return std::optional<Fault>();
}

AccessResult SoftwareCpu::Write(uint64_t linear, std::span<const uint8_t> in, MemoryAccess access) {
  if (auto f = Check(linear, in.size(), access)) return f;
  std::memcpy(At(linear), in.data(), in.size());
  return std::optional<Fault>();
}

AccessResult SoftwareCpu::Probe(uint64_t linear, uint64_t length, MemoryAccess access) {
  return Check(linear, length, access);
}

AccessResult SoftwareCpu::CompareExchange(uint64_t linear, std::span<const uint8_t> expected,
                                          std::span<const uint8_t> desired, std::span<uint8_t> old,
                                          MemoryAccess access) {
  if (auto f = Check(linear, old.size(), access)) return f;
  std::memcpy(old.data(), At(linear), old.size());
  if (std::memcmp(old.data(), expected.data(), old.size()) == 0) std::memcpy(At(linear), desired.data(), old.size());
  return std::optional<Fault>();
}

absl::Status SoftwareCpu::InjectException(const Fault& fault) {
  injected.push_back(fault);
  return absl::OkStatus();
}

}  // namespace coalesce
