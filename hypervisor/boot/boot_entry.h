// The CPU state a loader asks for at the kernel's first instruction, as plain data: loaders compute it
// without touching a vCPU, ApplyBootEntry() (cpu_startup.h) writes it into the bootstrap processor.
#pragma once

#include <cstdint>

namespace coalesce {

enum class BootCpuMode {
  kProtected32,  // flat 32-bit protected mode, paging off (Multiboot)
  kLong64,       // 64-bit long mode, identity-mapped paging (Linux 64-bit boot protocol)
};

struct BootEntry {
  BootCpuMode mode = BootCpuMode::kProtected32;
  uint64_t rip = 0;
  // General registers the protocol defines; the others start at zero. RFLAGS is 0x2 (interrupts off).
  uint64_t rax = 0;
  uint64_t rbx = 0;
  uint64_t rsi = 0;
  uint64_t rsp = 0;
  // The GDT holding code_selector (flat, execute/read) and data_selector (flat, read/write).
  uint64_t gdt_base = 0;
  uint16_t gdt_limit = 0;
  uint16_t code_selector = 0;
  uint16_t data_selector = 0;
  // PML4 address (kLong64 only).
  uint64_t cr3 = 0;
};

}  // namespace coalesce
