// Loads a Multiboot (v1) kernel: the image (ELF, or the header's address fields when flag 16 is set), its
// modules, and the Multiboot information structure (memory sizes, e820-style memory map, command line,
// module list, boot loader name); returns the spec's entry state: 32-bit protected mode, flat segments,
// paging off, EAX = 0x2BADB002, EBX = the information structure.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/boot/boot_entry.h"
#include "hypervisor/boot/e820_map.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

struct MultibootModule {
  std::span<const uint8_t> data;
  std::string string;  // the module's command line (often its name); may be empty
};

struct MultibootOptions {
  std::string cmdline;
  std::vector<MultibootModule> modules;
  std::vector<E820Entry> e820;  // the machine's memory map (E820Map::Entries())
  std::string boot_loader_name = "coalesce";
};

struct MultibootLoadResult {
  BootEntry entry;
  uint64_t info_addr = 0;
  uint64_t kernel_begin = 0;
  uint64_t kernel_end = 0;
  std::vector<uint64_t> module_addrs;
};

// Multiboot information structure flags we fill in.
inline constexpr uint32_t kMbInfoMemory = 1u << 0;
inline constexpr uint32_t kMbInfoCmdline = 1u << 2;
inline constexpr uint32_t kMbInfoModules = 1u << 3;
inline constexpr uint32_t kMbInfoMemoryMap = 1u << 6;
inline constexpr uint32_t kMbInfoBootLoaderName = 1u << 9;

// Errors: those of ParseMultibootHeader() and LoadElfPhysical(); InvalidArgument for inconsistent address
// fields; ResourceExhausted when modules do not fit in RAM below 4 GiB or the strings and tables overflow
// the information area.
absl::StatusOr<MultibootLoadResult> LoadMultiboot(GuestMemory& mem, std::span<const uint8_t> image,
                                                  const MultibootOptions& options);

}  // namespace coalesce
