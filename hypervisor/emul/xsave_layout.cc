#include "hypervisor/emul/xsave_layout.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>

namespace coalesce {

uint32_t XsaveLayout::StandardSize(uint64_t mask) const {
  uint32_t end = kXsaveExtendedStart;
  for (int i = 2; i < 63; ++i) {
    const XsaveComponent& c = components[i];
    if ((mask >> i & 1) && !c.supervisor && c.size != 0) end = std::max(end, c.standard_offset + c.size);
  }
  return end;
}

uint32_t XsaveLayout::CompactedOffset(uint64_t xcomp_bv, int component) const {
  uint32_t offset = kXsaveExtendedStart;
  for (int i = 2; i < component; ++i) {
    if (!(xcomp_bv >> i & 1)) continue;
    if (components[i].align64) offset = (offset + 63) & ~63u;
    offset += components[i].size;
  }
  if (components[component].align64) offset = (offset + 63) & ~63u;
  return offset;
}

uint32_t XsaveLayout::CompactedSize(uint64_t xcomp_bv) const {
  uint32_t end = kXsaveExtendedStart;
  for (int i = 2; i < 63; ++i) {
    if (xcomp_bv >> i & 1) end = std::max(end, CompactedOffset(xcomp_bv, i) + components[i].size);
  }
  return end;
}

XsaveLayout XsaveLayout::FromHostCpuid() {
  XsaveLayout layout;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const unsigned max_leaf = __get_cpuid_max(0, nullptr);
  __cpuid(0, eax, ebx, ecx, edx);
  layout.amd_x87_error_state = ebx == 0x68747541 && edx == 0x69746e65 && ecx == 0x444d4163;  // AuthenticAMD
  if (max_leaf < 0xd) return layout;
  __cpuid_count(1, 0, eax, ebx, ecx, edx);
  layout.has_xsave = (ecx >> 26) & 1;
  if (!layout.has_xsave) return layout;
  __cpuid_count(0xd, 0, eax, ebx, ecx, edx);
  layout.user_mask = (static_cast<uint64_t>(edx) << 32) | eax;
  __cpuid_count(0xd, 1, eax, ebx, ecx, edx);
  layout.has_xsaveopt = eax & 1;
  layout.has_xsavec = (eax >> 1) & 1;
  layout.has_xsaves = (eax >> 3) & 1;
  layout.supervisor_mask = (static_cast<uint64_t>(edx) << 32) | ecx;
  const uint64_t all = layout.user_mask | layout.supervisor_mask;
  for (int i = 2; i < 63; ++i) {
    if (!(all >> i & 1)) continue;
    __cpuid_count(0xd, static_cast<unsigned>(i), eax, ebx, ecx, edx);
    layout.components[i] = {eax, ebx, (ecx & 1) != 0, (ecx & 2) != 0};
  }
  // MXCSR_MASK as FXSAVE reports it (0 means the architectural default 0xffbf).
  alignas(16) uint8_t area[512];
  std::memset(area, 0, sizeof(area));
  asm volatile("fxsave64 %0" : "=m"(area));
  uint32_t mask = 0;
  std::memcpy(&mask, area + 28, 4);
  layout.mxcsr_mask = mask != 0 ? mask : 0xffbf;
  return layout;
}

}  // namespace coalesce
