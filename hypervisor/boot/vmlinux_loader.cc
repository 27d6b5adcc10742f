#include "hypervisor/boot/vmlinux_loader.h"

#include <elf.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/boot/boot_layout.h"
#include "hypervisor/boot/elf_loader.h"

namespace coalesce {
namespace {

constexpr uint64_t k4GiB = 1ULL << 32;

}  // namespace

absl::StatusOr<VmlinuxLoadResult> LoadVmlinux(GuestMemory& mem, std::span<const uint8_t> elf) {
  // Checked before loading so a 32-bit ELF never reaches guest memory.
  if (elf.size() < sizeof(Elf64_Ehdr) || std::memcmp(elf.data(), ELFMAG, SELFMAG) != 0) {
    return absl::InvalidArgumentError("decompressed kernel is not an ELF file");
  }
  if (elf[EI_CLASS] != ELFCLASS64) return absl::InvalidArgumentError("decompressed kernel is not a 64-bit ELF file");
  Elf64_Ehdr eh;
  std::memcpy(&eh, elf.data(), sizeof(eh));

  // Below 1 MiB live the zero page, command line, GDT, page tables and the ACPI/BIOS area.
  ASSIGN_OR_RETURN(ElfLoadResult r,
                   LoadElfPhysical(mem, elf, k4GiB, AddressRange{0, boot_layout::kHighLoadAddr}));
  // LoadElfPhysical translates an entry that falls inside a segment's virtual range; vmlinux's e_entry is
  // physical already (and its per-CPU segment is linked at virtual 0), so take it as it is.
  VmlinuxLoadResult out{.entry = eh.e_entry, .lowest = r.lowest, .highest_end = r.highest_end};
  if (out.entry < out.lowest || out.entry >= out.highest_end) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "vmlinux entry point %#x lies outside its loaded segments [%#x, %#x)", out.entry, out.lowest,
        out.highest_end));
  }
  return out;
}

}  // namespace coalesce
