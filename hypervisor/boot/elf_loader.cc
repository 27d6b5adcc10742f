#include "hypervisor/boot/elf_loader.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {
namespace {

// The fields of one program header that matter, widened to 64 bits.
struct Segment {
  uint32_t type;
  uint64_t offset;
  uint64_t vaddr;
  uint64_t paddr;
  uint64_t filesz;
  uint64_t memsz;
};

struct Parsed {
  bool is_64;
  uint64_t entry;
  std::vector<Segment> segments;
};

template <typename T>
T ReadAt(std::span<const uint8_t> image, uint64_t off) {
  T v;
  std::memcpy(&v, image.data() + off, sizeof(T));
  return v;
}

bool FitsInFile(std::span<const uint8_t> image, uint64_t off, uint64_t len) {
  return off <= image.size() && len <= image.size() - off;
}

template <typename Ehdr, typename Phdr>
absl::StatusOr<Parsed> ParseElf(std::span<const uint8_t> image, uint16_t machine, bool is_64) {
  if (!FitsInFile(image, 0, sizeof(Ehdr))) return absl::InvalidArgumentError("ELF file truncated in its header");
  const auto eh = ReadAt<Ehdr>(image, 0);
  if (eh.e_machine != machine) {
    return absl::InvalidArgumentError(absl::StrFormat("ELF machine %u is not x86 (%u)", eh.e_machine, machine));
  }
  if (eh.e_type != ET_EXEC) return absl::InvalidArgumentError("ELF file is not an executable (ET_EXEC)");
  if (eh.e_phentsize != sizeof(Phdr)) {
    return absl::InvalidArgumentError(absl::StrFormat("ELF program header size %u, expected %u", eh.e_phentsize,
                                                      sizeof(Phdr)));
  }
  if (!FitsInFile(image, eh.e_phoff, static_cast<uint64_t>(eh.e_phnum) * sizeof(Phdr))) {
    return absl::InvalidArgumentError("ELF program headers lie outside the file");
  }
  Parsed p{is_64, eh.e_entry, {}};
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    const auto ph = ReadAt<Phdr>(image, eh.e_phoff + static_cast<uint64_t>(i) * sizeof(Phdr));
    p.segments.push_back({ph.p_type, ph.p_offset, ph.p_vaddr, ph.p_paddr, ph.p_filesz, ph.p_memsz});
  }
  return p;
}

absl::StatusOr<Parsed> Parse(std::span<const uint8_t> image) {
  if (image.size() < EI_NIDENT || std::memcmp(image.data(), ELFMAG, SELFMAG) != 0) {
    return absl::InvalidArgumentError("not an ELF file");
  }
  if (image[EI_DATA] != ELFDATA2LSB) return absl::InvalidArgumentError("ELF file is not little-endian");
  if (image[EI_CLASS] == ELFCLASS32) return ParseElf<Elf32_Ehdr, Elf32_Phdr>(image, EM_386, false);
  if (image[EI_CLASS] == ELFCLASS64) return ParseElf<Elf64_Ehdr, Elf64_Phdr>(image, EM_X86_64, true);
  return absl::InvalidArgumentError("unknown ELF class");
}

}  // namespace

absl::StatusOr<ElfLoadResult> LoadElfPhysical(GuestMemory& mem, std::span<const uint8_t> image, uint64_t limit,
                                              AddressRange forbidden) {
  ASSIGN_OR_RETURN(Parsed p, Parse(image));
  ElfLoadResult r;
  r.is_64 = p.is_64;
  r.lowest = UINT64_MAX;
  bool entry_found = false;
  // Validate every segment before writing any, so a bad image leaves guest memory untouched.
  std::vector<const Segment*> loads;
  for (const Segment& s : p.segments) {
    if (s.type != PT_LOAD || s.memsz == 0) continue;
    if (s.filesz > s.memsz) return absl::InvalidArgumentError("ELF segment has p_filesz > p_memsz");
    if (!FitsInFile(image, s.offset, s.filesz)) {
      return absl::InvalidArgumentError(absl::StrFormat("ELF segment at file offset %#x runs past the file", s.offset));
    }
    if (s.paddr > limit || s.memsz > limit - s.paddr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ELF segment [%#x, +%#x) lies above %#x: a 32-bit entry cannot reach it", s.paddr, s.memsz, limit));
    }
    if (s.paddr < forbidden.end && forbidden.begin < s.paddr + s.memsz) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ELF segment [%#x, %#x) overlaps the loader's boot structures [%#x, %#x)", s.paddr, s.paddr + s.memsz,
          forbidden.begin, forbidden.end));
    }
    if (!mem.Contains(s.paddr, s.memsz)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("ELF segment [%#x, %#x) is not in guest RAM", s.paddr, s.paddr + s.memsz));
    }
    loads.push_back(&s);
    r.lowest = std::min(r.lowest, s.paddr);
    r.highest_end = std::max(r.highest_end, s.paddr + s.memsz);
    if (!entry_found && p.entry >= s.vaddr && p.entry - s.vaddr < s.memsz) {
      r.entry = p.entry - s.vaddr + s.paddr;
      entry_found = true;
    }
  }
  if (loads.empty()) return absl::InvalidArgumentError("ELF file has no loadable segment");
  if (!entry_found) r.entry = p.entry;  // the spec's reading: e_entry is physical when no segment maps it
  if (r.entry >= limit) {
    return absl::InvalidArgumentError(absl::StrFormat("ELF entry point %#x is above %#x", r.entry, limit));
  }
  for (const Segment* s : loads) {
    ASSIGN_OR_RETURN(auto dst, mem.HostSpan(s->paddr, s->memsz));
    std::memcpy(dst.data(), image.data() + s->offset, s->filesz);
    std::memset(dst.data() + s->filesz, 0, s->memsz - s->filesz);
  }
  return r;
}

}  // namespace coalesce
