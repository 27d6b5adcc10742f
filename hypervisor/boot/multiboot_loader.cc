#include "hypervisor/boot/multiboot_loader.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/boot/boot_layout.h"
#include "hypervisor/boot/boot_tables.h"
#include "hypervisor/boot/elf_loader.h"
#include "hypervisor/boot/multiboot_header.h"

namespace coalesce {
namespace {

constexpr uint64_t k4GiB = 1ULL << 32;
constexpr uint64_t k1MiB = 1ULL << 20;
constexpr uint64_t kLowMemoryMax = 640 * 1024;
constexpr size_t kInfoStructSize = 116;  // through the framebuffer fields (spec 3.3)
constexpr size_t kMmapEntrySize = 24;    // size field (4) + base (8) + length (8) + type (4)
constexpr size_t kModuleEntrySize = 16;

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// Builds the information area in a host buffer that is copied into the guest in one write; addresses in it
// are guest-physical.
class InfoArea {
 public:
  explicit InfoArea(uint64_t base, size_t size) : base_(base), buf_(size, 0) {}

  // Reserves `len` bytes aligned to `align`; returns its guest address.
  absl::StatusOr<uint64_t> Allocate(size_t len, size_t align) {
    size_t at = AlignUp(used_, align);
    if (at > buf_.size() || len > buf_.size() - at) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "Multiboot information does not fit in its %u-byte area (command line and module strings too long?)",
          buf_.size()));
    }
    used_ = at + len;
    return base_ + at;
  }
  absl::StatusOr<uint32_t> AddString(const std::string& s) {
    ASSIGN_OR_RETURN(uint64_t addr, Allocate(s.size() + 1, 1));
    std::memcpy(&buf_[addr - base_], s.data(), s.size());
    return static_cast<uint32_t>(addr);
  }
  void Put32(uint64_t addr, uint32_t v) { std::memcpy(&buf_[addr - base_], &v, 4); }
  void Put64(uint64_t addr, uint64_t v) { std::memcpy(&buf_[addr - base_], &v, 8); }
  std::span<const uint8_t> bytes() const { return {buf_.data(), used_}; }

 private:
  uint64_t base_;
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
};

// Loads the image through the header's address fields (the "a.out kludge").
absl::StatusOr<std::pair<uint64_t, uint64_t>> LoadByAddressFields(GuestMemory& mem, std::span<const uint8_t> image,
                                                                  const MultibootHeader& h, uint64_t* entry) {
  const MultibootAddressFields& a = *h.address;
  if (a.load_addr > a.header_addr || a.header_addr - a.load_addr > h.offset) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Multiboot address fields inconsistent: load_addr %#x, header_addr %#x, header at file offset %#x",
        a.load_addr, a.header_addr, h.offset));
  }
  const uint64_t file_start = h.offset - (a.header_addr - a.load_addr);
  uint64_t load_len = image.size() - file_start;
  if (a.load_end_addr != 0) {
    if (a.load_end_addr < a.load_addr || a.load_end_addr - a.load_addr > load_len) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "Multiboot load_end_addr %#x is before load_addr or past the end of the file", a.load_end_addr));
    }
    load_len = a.load_end_addr - a.load_addr;
  }
  const uint64_t load_end = a.load_addr + load_len;
  uint64_t end = load_end;
  if (a.bss_end_addr != 0) {
    if (a.bss_end_addr < load_end) {
      return absl::InvalidArgumentError(
          absl::StrFormat("Multiboot bss_end_addr %#x is below the loaded image end %#x", a.bss_end_addr, load_end));
    }
    end = a.bss_end_addr;
  }
  if (end > k4GiB) return absl::InvalidArgumentError("Multiboot image extends above 4 GiB");
  if (!mem.Contains(a.load_addr, end - a.load_addr)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Multiboot image [%#x, %#x) is not in guest RAM", a.load_addr, end));
  }
  if (a.entry_addr < a.load_addr || a.entry_addr >= end) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Multiboot entry_addr %#x is outside the image [%#x, %#x)", a.entry_addr, a.load_addr, end));
  }
  RETURN_IF_ERROR(mem.Write(a.load_addr, image.subspan(file_start, load_len)));
  ASSIGN_OR_RETURN(auto bss, mem.HostSpan(load_end, end - load_end));
  std::fill(bss.begin(), bss.end(), 0);
  *entry = a.entry_addr;
  return std::make_pair(static_cast<uint64_t>(a.load_addr), end);
}

// Places modules one after another, page-aligned, from `cursor` up, in RAM below 4 GiB.
absl::StatusOr<uint64_t> PlaceModule(const std::vector<E820Entry>& e820, uint64_t cursor, uint64_t size) {
  for (const E820Entry& e : e820) {
    if (e.type != E820Type::kRam) continue;
    uint64_t begin = AlignUp(std::max(cursor, e.addr), platform::kPageSize);
    uint64_t end = std::min(e.addr + e.size, k4GiB);
    if (begin < end && end - begin >= size) return begin;
  }
  return absl::ResourceExhaustedError(
      absl::StrFormat("Multiboot module of %u bytes does not fit in guest RAM below 4 GiB after %#x", size, cursor));
}

// The information structure, its memory map, module list and strings, laid out from guest address `base`.
absl::StatusOr<InfoArea> BuildInfoArea(uint64_t base, const MultibootOptions& options,
                                       const MultibootLoadResult& loaded) {
  InfoArea area(base, boot_layout::kMultibootInfoSize);
  ASSIGN_OR_RETURN(const uint64_t info, area.Allocate(kInfoStructSize, 8));
  uint32_t flags = kMbInfoMemory | kMbInfoCmdline | kMbInfoMemoryMap | kMbInfoBootLoaderName;

  uint64_t lower = 0;
  uint64_t upper = 0;
  for (const E820Entry& e : options.e820) {
    if (e.type != E820Type::kRam) continue;
    if (e.addr == 0) lower = std::min(e.size, kLowMemoryMax);
    if (e.addr <= k1MiB && e.addr + e.size > k1MiB) upper = e.addr + e.size - k1MiB;
  }
  area.Put32(info + 4, static_cast<uint32_t>(lower >> 10));
  area.Put32(info + 8, static_cast<uint32_t>(std::min<uint64_t>(upper >> 10, UINT32_MAX)));

  ASSIGN_OR_RETURN(uint32_t cmdline, area.AddString(options.cmdline));
  area.Put32(info + 16, cmdline);

  if (!options.modules.empty()) {
    flags |= kMbInfoModules;
    ASSIGN_OR_RETURN(uint64_t list, area.Allocate(options.modules.size() * kModuleEntrySize, 4));
    for (size_t i = 0; i < options.modules.size(); ++i) {
      ASSIGN_OR_RETURN(uint32_t str, area.AddString(options.modules[i].string));
      const uint64_t at = list + i * kModuleEntrySize;
      area.Put32(at, static_cast<uint32_t>(loaded.module_addrs[i]));
      area.Put32(at + 4, static_cast<uint32_t>(loaded.module_addrs[i] + options.modules[i].data.size()));
      area.Put32(at + 8, str);
    }
    area.Put32(info + 20, static_cast<uint32_t>(options.modules.size()));
    area.Put32(info + 24, static_cast<uint32_t>(list));
  }

  ASSIGN_OR_RETURN(uint64_t mmap, area.Allocate(options.e820.size() * kMmapEntrySize, 4));
  for (size_t i = 0; i < options.e820.size(); ++i) {
    const uint64_t at = mmap + i * kMmapEntrySize;
    area.Put32(at, kMmapEntrySize - 4);  // "size" excludes itself
    area.Put64(at + 4, options.e820[i].addr);
    area.Put64(at + 12, options.e820[i].size);
    area.Put32(at + 20, static_cast<uint32_t>(options.e820[i].type));
  }
  area.Put32(info + 44, static_cast<uint32_t>(options.e820.size() * kMmapEntrySize));
  area.Put32(info + 48, static_cast<uint32_t>(mmap));

  ASSIGN_OR_RETURN(uint32_t name, area.AddString(options.boot_loader_name));
  area.Put32(info + 64, name);
  area.Put32(info, flags);
  return area;
}

struct Range {
  uint64_t begin;
  uint64_t end;
};
bool Overlaps(const Range& a, const std::vector<Range>& taken) {
  return std::any_of(taken.begin(), taken.end(), [&a](const Range& t) { return a.begin < t.end && t.begin < a.end; });
}

// Where the loader's own structures go. The classic low layout (boot_layout.h: GDT 0x500, stack below 0x9000,
// information area at 0x10000) when the kernel leaves it free; otherwise one block, [GDT | stack | info], on
// the first free pages of RAM below 4 GiB (page 0, the real-mode IVT and BIOS data, is never used).
struct BootBlock {
  uint64_t gdt;
  uint64_t stack_top;
  uint64_t info;
};
absl::StatusOr<BootBlock> PlaceBootBlock(const std::vector<E820Entry>& e820, const std::vector<Range>& taken,
                                         uint64_t info_size) {
  constexpr uint64_t kGdtSize = kBootGdtLimit + 1;
  constexpr uint64_t kStackSize = platform::kPageSize;
  const Range classic_gdt{boot_layout::kGdtAddr, boot_layout::kGdtAddr + kGdtSize};
  const Range classic_stack{boot_layout::kStackTop - kStackSize, boot_layout::kStackTop};
  const Range classic_info{boot_layout::kMultibootInfoAddr, boot_layout::kMultibootInfoAddr + info_size};
  if (!Overlaps(classic_gdt, taken) && !Overlaps(classic_stack, taken) && !Overlaps(classic_info, taken)) {
    return BootBlock{boot_layout::kGdtAddr, boot_layout::kStackTop, boot_layout::kMultibootInfoAddr};
  }
  const uint64_t size =
      AlignUp(2 * platform::kPageSize + info_size, platform::kPageSize);  // GDT page, stack page, info
  for (const E820Entry& e : e820) {
    if (e.type != E820Type::kRam) continue;
    const uint64_t region_end = std::min(e.addr + e.size, k4GiB);
    for (uint64_t at = AlignUp(std::max(e.addr, platform::kPageSize), platform::kPageSize);
         at < region_end && region_end - at >= size; at += platform::kPageSize) {
      const Range block{at, at + size};
      if (Overlaps(block, taken)) continue;
      return BootBlock{at, at + 2 * platform::kPageSize, at + 2 * platform::kPageSize};
    }
  }
  return absl::ResourceExhaustedError(absl::StrFormat(
      "no %u free bytes of RAM below 4 GiB for the Multiboot boot structures beside the kernel and modules", size));
}

}  // namespace

absl::StatusOr<MultibootLoadResult> LoadMultiboot(GuestMemory& mem, std::span<const uint8_t> image,
                                                  const MultibootOptions& options) {
  ASSIGN_OR_RETURN(MultibootHeader header, ParseMultibootHeader(image));
  MultibootLoadResult result;
  uint64_t entry = 0;
  if (header.address) {
    ASSIGN_OR_RETURN(auto range, LoadByAddressFields(mem, image, header, &entry));
    result.kernel_begin = range.first;
    result.kernel_end = range.second;
  } else {
    // Anywhere in RAM: the boot block is placed around the kernel afterwards.
    ASSIGN_OR_RETURN(ElfLoadResult elf, LoadElfPhysical(mem, image, k4GiB, {0, 0}));
    entry = elf.entry;
    result.kernel_begin = elf.lowest;
    result.kernel_end = elf.highest_end;
  }

  // Modules after the kernel (never below 1 MiB, where our boot structures and the BIOS area live).
  uint64_t cursor = std::max(AlignUp(result.kernel_end, platform::kPageSize), k1MiB);
  for (const MultibootModule& m : options.modules) {
    ASSIGN_OR_RETURN(uint64_t at, PlaceModule(options.e820, cursor, m.data.size()));
    RETURN_IF_ERROR(mem.Write(at, m.data));
    result.module_addrs.push_back(at);
    cursor = at + std::max<uint64_t>(m.data.size(), 1);
  }

  // The boot block (GDT, stack, information area) goes where the kernel and modules are not: the classic low
  // layout of boot_layout.h when it is free, else the first free pages of RAM below 4 GiB.
  std::vector<Range> taken = {{result.kernel_begin, result.kernel_end}};
  for (size_t i = 0; i < options.modules.size(); ++i) {
    taken.push_back({result.module_addrs[i], result.module_addrs[i] + options.modules[i].data.size()});
  }
  ASSIGN_OR_RETURN(const InfoArea probe, BuildInfoArea(0, options, result));
  ASSIGN_OR_RETURN(const BootBlock block, PlaceBootBlock(options.e820, taken, probe.bytes().size()));
  ASSIGN_OR_RETURN(const InfoArea area, BuildInfoArea(block.info, options, result));
  const uint64_t info = block.info;
  RETURN_IF_ERROR(mem.Write(block.info, area.bytes()));
  RETURN_IF_ERROR(WriteBootGdtAt(mem, BootCpuMode::kProtected32, block.gdt));

  result.info_addr = info;
  BootEntry& e = result.entry;
  e.mode = BootCpuMode::kProtected32;
  e.rip = entry;
  e.rax = kMultibootBootloaderMagic;
  e.rbx = info;
  e.rsp = block.stack_top;
  e.gdt_base = block.gdt;
  e.gdt_limit = kBootGdtLimit;
  e.code_selector = boot_layout::kCodeSelector;
  e.data_selector = boot_layout::kDataSelector;
  LOG_INFO("multiboot: kernel [%#x, %#x), %u module(s), info %#x, GDT %#x, stack top %#x, entry %#x",
           result.kernel_begin, result.kernel_end, result.module_addrs.size(), info, block.gdt, block.stack_top, entry);
  return result;
}

}  // namespace coalesce
