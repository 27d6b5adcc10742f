#include "hypervisor/boot/boot_tables.h"

#include <array>
#include <cstring>

#include "hypervisor/base/status_macros.h"
#include "hypervisor/boot/boot_layout.h"

namespace coalesce {
namespace {

template <size_t N>
absl::Status WriteQwords(GuestMemory& mem, uint64_t gpa, const std::array<uint64_t, N>& qwords) {
  std::array<uint8_t, N * 8> bytes{};
  for (size_t i = 0; i < N; ++i) {
    for (size_t b = 0; b < 8; ++b) bytes[i * 8 + b] = static_cast<uint8_t>(qwords[i] >> (8 * b));
  }
  return mem.Write(gpa, bytes);
}

}  // namespace

absl::Status WriteBootGdt(GuestMemory& mem, BootCpuMode mode) {
  return WriteBootGdtAt(mem, mode, boot_layout::kGdtAddr);
}

absl::Status WriteBootGdtAt(GuestMemory& mem, BootCpuMode mode, uint64_t gdt_addr) {
  const uint64_t code = mode == BootCpuMode::kLong64 ? kGdtCode64 : kGdtCode32;
  static_assert(boot_layout::kCodeSelector == 2 * 8 && boot_layout::kDataSelector == 3 * 8);
  return WriteQwords<4>(mem, gdt_addr, {0, 0, code, kGdtData});
}

absl::StatusOr<uint64_t> WriteIdentityPageTables(GuestMemory& mem) {
  constexpr uint64_t kPresentWrite = 0x3;
  constexpr uint64_t kLargePage = 0x80;
  const uint64_t pml4 = boot_layout::kPageTablesAddr;
  const uint64_t pdpt = pml4 + 0x1000;
  const uint64_t pd0 = pml4 + 0x2000;
  ASSIGN_OR_RETURN(auto span, mem.HostSpan(pml4, boot_layout::kPageTablesSize));
  std::memset(span.data(), 0, span.size());

  std::array<uint64_t, 1> pml4e{pdpt | kPresentWrite};
  RETURN_IF_ERROR(WriteQwords(mem, pml4, pml4e));
  std::array<uint64_t, 4> pdpte{};
  for (uint64_t i = 0; i < 4; ++i) pdpte[i] = (pd0 + i * 0x1000) | kPresentWrite;
  RETURN_IF_ERROR(WriteQwords(mem, pdpt, pdpte));
  std::array<uint64_t, 4 * 512> pde{};
  for (uint64_t i = 0; i < pde.size(); ++i) pde[i] = (i << 21) | kPresentWrite | kLargePage;
  RETURN_IF_ERROR(WriteQwords(mem, pd0, pde));
  return pml4;
}

kvm_segment SegmentFromDescriptor(uint64_t d, uint16_t selector) {
  kvm_segment s{};
  s.base = static_cast<uint64_t>(((d >> 16) & 0xFF'FFFF) | ((d >> 32) & 0xFF00'0000));
  uint32_t limit = static_cast<uint32_t>((d & 0xFFFF) | ((d >> 32) & 0xF'0000));
  s.g = (d >> 55) & 1;
  s.limit = s.g ? (limit << 12) | 0xFFF : limit;
  s.selector = selector;
  s.type = (d >> 40) & 0xF;
  s.s = (d >> 44) & 1;
  s.dpl = (d >> 45) & 3;
  s.present = (d >> 47) & 1;
  s.avl = (d >> 52) & 1;
  s.l = (d >> 53) & 1;
  s.db = (d >> 54) & 1;
  return s;
}

}  // namespace coalesce
