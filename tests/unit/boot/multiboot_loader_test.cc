#include "hypervisor/boot/multiboot_loader.h"

#include <elf.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "hypervisor/boot/boot_layout.h"
#include "hypervisor/boot/boot_tables.h"
#include "hypervisor/boot/kernel_image.h"
#include "hypervisor/boot/multiboot_header.h"

namespace coalesce {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;

template <typename T>
void Poke(std::vector<uint8_t>& b, size_t off, T v) {
  std::memcpy(&b[off], &v, sizeof(T));
}

uint32_t Read32(const GuestMemory& mem, uint64_t gpa) {
  uint32_t v = 0;
  REQUIRE(mem.Read(gpa, {reinterpret_cast<uint8_t*>(&v), 4}).ok());
  return v;
}
uint64_t Read64(const GuestMemory& mem, uint64_t gpa) {
  uint64_t v = 0;
  REQUIRE(mem.Read(gpa, {reinterpret_cast<uint8_t*>(&v), 8}).ok());
  return v;
}
std::string ReadString(const GuestMemory& mem, uint64_t gpa) {
  std::string s;
  for (;;) {
    uint8_t c = 0;
    REQUIRE(mem.Read(gpa++, {&c, 1}).ok());
    if (c == 0) return s;
    s.push_back(static_cast<char>(c));
  }
}

void PutMultibootHeader(std::vector<uint8_t>& b, size_t off, uint32_t flags) {
  Poke<uint32_t>(b, off, kMultibootHeaderMagic);
  Poke<uint32_t>(b, off + 4, flags);
  Poke<uint32_t>(b, off + 8, static_cast<uint32_t>(0u - kMultibootHeaderMagic - flags));
}

// An ELF32 kernel: one segment of 0x1000 file bytes (header at file offset 0x1000 + 0x10) linked at
// virtual 0xC0100000, physical 0x100000, with 0x3000 bytes of bss; entry at virtual 0xC0100040.
std::vector<uint8_t> Elf32Kernel(uint32_t mb_flags = 0) {
  std::vector<uint8_t> b(0x2000, 0);
  Elf32_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS32;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_386;
  eh.e_version = EV_CURRENT;
  eh.e_entry = 0xC0100040;
  eh.e_phoff = sizeof(Elf32_Ehdr);
  eh.e_ehsize = sizeof(Elf32_Ehdr);
  eh.e_phentsize = sizeof(Elf32_Phdr);
  eh.e_phnum = 2;
  std::memcpy(b.data(), &eh, sizeof(eh));
  Elf32_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x1000;
  ph.p_vaddr = 0xC0100000;
  ph.p_paddr = 0x100000;
  ph.p_filesz = 0x1000;
  ph.p_memsz = 0x4000;
  std::memcpy(b.data() + sizeof(eh), &ph, sizeof(ph));
  Elf32_Phdr note{};
  note.p_type = PT_NOTE;  // ignored
  std::memcpy(b.data() + sizeof(eh) + sizeof(ph), &note, sizeof(note));
  for (size_t i = 0x1000; i < 0x2000; ++i) b[i] = static_cast<uint8_t>(i);
  PutMultibootHeader(b, 0x1010, mb_flags);
  return b;
}

struct Guest {
  Guest() : mem(GuestMemory::Create(64 * kMiB).value()) { e820 = E820Map::ForRegions(mem.regions()).Entries(); }
  GuestMemory mem;
  std::vector<E820Entry> e820;
};

TEST_CASE("Multiboot header: found, checksummed, flags checked") {
  auto img = Elf32Kernel(kMultibootWantMemoryInfo | kMultibootPageAlignModules);
  auto h = ParseMultibootHeader(img);
  REQUIRE(h.ok());
  CHECK(h->offset == 0x1010);
  CHECK(!h->address);
  CHECK(DetectKernelFormat(img) == KernelFormat::kMultiboot);

  SECTION("bad checksum is no header") {
    Poke<uint32_t>(img, 0x1018, 0);
    CHECK(ParseMultibootHeader(img).status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(DetectKernelFormat(img) == KernelFormat::kUnknown);
  }
  SECTION("header beyond 8 KiB is not found") {
    std::vector<uint8_t> far(0x3000, 0);
    PutMultibootHeader(far, 0x2000, 0);
    CHECK(!ParseMultibootHeader(far).ok());
  }
  SECTION("video mode request is refused") {
    PutMultibootHeader(img, 0x1010, kMultibootWantVideoMode);
    CHECK(ParseMultibootHeader(img).status().code() == absl::StatusCode::kUnimplemented);
  }
  SECTION("unknown required flag is refused") {
    PutMultibootHeader(img, 0x1010, 1u << 7);
    CHECK(ParseMultibootHeader(img).status().code() == absl::StatusCode::kUnimplemented);
  }
  SECTION("unknown optional flag is fine") {
    PutMultibootHeader(img, 0x1010, 1u << 20);
    CHECK(ParseMultibootHeader(img).ok());
  }
}

TEST_CASE("Multiboot ELF32 load: segments, bss, entry translation, info structure") {
  Guest g;
  // Dirty the bss range first: the loader must zero it.
  std::vector<uint8_t> junk(0x3000, 0xEE);
  REQUIRE(g.mem.Write(0x101000, junk).ok());
  auto img = Elf32Kernel();
  std::vector<uint8_t> mod_a(5000, 0xA1), mod_b(100, 0xB2);
  MultibootOptions opt;
  opt.cmdline = "kernel arg=1";
  opt.modules = {{mod_a, "initrd.img"}, {mod_b, ""}};
  opt.e820 = g.e820;
  auto r = LoadMultiboot(g.mem, img, opt);
  REQUIRE(r.ok());

  // Entry state.
  CHECK(r->entry.mode == BootCpuMode::kProtected32);
  CHECK(r->entry.rip == 0x100040);
  CHECK(r->entry.rax == 0x2BADB002);
  CHECK(r->entry.rbx == r->info_addr);
  // Image and bss.
  std::vector<uint8_t> seg(0x4000);
  REQUIRE(g.mem.Read(0x100000, seg).ok());
  CHECK(std::equal(seg.begin(), seg.begin() + 0x1000, img.begin() + 0x1000));
  CHECK(std::all_of(seg.begin() + 0x1000, seg.end(), [](uint8_t x) { return x == 0; }));
  CHECK(r->kernel_begin == 0x100000);
  CHECK(r->kernel_end == 0x104000);

  // Info structure fields, read back from guest memory.
  const uint64_t info = r->info_addr;
  const uint32_t flags = Read32(g.mem, info);
  CHECK((flags & kMbInfoMemory) != 0);
  CHECK((flags & kMbInfoCmdline) != 0);
  CHECK((flags & kMbInfoModules) != 0);
  CHECK((flags & kMbInfoMemoryMap) != 0);
  CHECK((flags & kMbInfoBootLoaderName) != 0);
  CHECK(Read32(g.mem, info + 4) == 639);                    // mem_lower: 0x9fc00 / 1 KiB
  CHECK(Read32(g.mem, info + 8) == (64 * kMiB - kMiB) / 1024);  // mem_upper
  CHECK(ReadString(g.mem, Read32(g.mem, info + 16)) == "kernel arg=1");
  CHECK(ReadString(g.mem, Read32(g.mem, info + 64)) == "coalesce");

  REQUIRE(Read32(g.mem, info + 20) == 2);
  const uint32_t mods = Read32(g.mem, info + 24);
  const uint32_t a_start = Read32(g.mem, mods), a_end = Read32(g.mem, mods + 4);
  const uint32_t b_start = Read32(g.mem, mods + 16), b_end = Read32(g.mem, mods + 20);
  CHECK(a_start >= r->kernel_end);
  CHECK(a_start % 4096 == 0);
  CHECK(a_end - a_start == mod_a.size());
  CHECK(b_start >= a_end);
  CHECK(b_start % 4096 == 0);
  CHECK(b_end - b_start == mod_b.size());
  CHECK(ReadString(g.mem, Read32(g.mem, mods + 8)) == "initrd.img");
  CHECK(ReadString(g.mem, Read32(g.mem, mods + 24)).empty());
  std::vector<uint8_t> back(mod_a.size());
  REQUIRE(g.mem.Read(a_start, back).ok());
  CHECK(back == mod_a);

  // Memory map: one 24-byte record per e820 entry, size field 20.
  const uint32_t mmap_len = Read32(g.mem, info + 44);
  const uint32_t mmap = Read32(g.mem, info + 48);
  REQUIRE(mmap_len == 24 * g.e820.size());
  for (size_t i = 0; i < g.e820.size(); ++i) {
    const uint64_t at = mmap + 24 * i;
    CHECK(Read32(g.mem, at) == 20);
    CHECK(Read64(g.mem, at + 4) == g.e820[i].addr);
    CHECK(Read64(g.mem, at + 12) == g.e820[i].size);
    CHECK(Read32(g.mem, at + 20) == static_cast<uint32_t>(g.e820[i].type));
  }
  // The reserved BIOS area is in the map and not RAM.
  CHECK(g.e820[1].type == E820Type::kReserved);
  CHECK(g.e820[1].addr == 0x9fc00);
}

TEST_CASE("Multiboot a.out kludge: address fields") {
  Guest g;
  // Header at file offset 0x40, image linked so that file offset 0 is at 0x200000.
  std::vector<uint8_t> b(0x800, 0x90);
  const uint32_t flags = kMultibootAddressFields;
  PutMultibootHeader(b, 0x40, flags);
  Poke<uint32_t>(b, 0x4C, 0x200040);  // header_addr
  Poke<uint32_t>(b, 0x50, 0x200000);  // load_addr
  Poke<uint32_t>(b, 0x54, 0x200600);  // load_end_addr: the last 0x200 bytes are not loaded
  Poke<uint32_t>(b, 0x58, 0x202000);  // bss_end_addr
  Poke<uint32_t>(b, 0x5C, 0x200100);  // entry_addr
  auto r = LoadMultiboot(g.mem, b, {.cmdline = "", .modules = {}, .e820 = g.e820});
  REQUIRE(r.ok());
  CHECK(r->entry.rip == 0x200100);
  CHECK(r->kernel_begin == 0x200000);
  CHECK(r->kernel_end == 0x202000);
  CHECK(Read32(g.mem, 0x200040) == kMultibootHeaderMagic);
  CHECK(Read32(g.mem, 0x2005FC) == 0x90909090);
  CHECK(Read32(g.mem, 0x200600) == 0);  // bss

  SECTION("entry outside the image") {
    Poke<uint32_t>(b, 0x5C, 0x300000);
    CHECK(LoadMultiboot(g.mem, b, {.e820 = g.e820}).status().code() == absl::StatusCode::kInvalidArgument);
  }
  SECTION("header_addr inconsistent with the file") {
    Poke<uint32_t>(b, 0x4C, 0x200400);
    CHECK(LoadMultiboot(g.mem, b, {.e820 = g.e820}).status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("Multiboot ELF64 with a 32-bit entry is accepted") {
  Guest g;
  std::vector<uint8_t> b(0x2000, 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_entry = 0x100020;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 1;
  std::memcpy(b.data(), &eh, sizeof(eh));
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x1000;
  ph.p_vaddr = ph.p_paddr = 0x100000;
  ph.p_filesz = ph.p_memsz = 0x1000;
  std::memcpy(b.data() + sizeof(eh), &ph, sizeof(ph));
  PutMultibootHeader(b, 0x1000, 0);
  auto r = LoadMultiboot(g.mem, b, {.e820 = g.e820});
  REQUIRE(r.ok());
  CHECK(r->entry.rip == 0x100020);
}

// A kernel that sits where the classic boot structures would go (low memory) moves them, as other loaders do:
// nothing the loader writes may overlap the kernel, and the entry state points at where they went.
TEST_CASE("Multiboot boot structures move around a kernel in low memory") {
  Guest g;
  auto check_clear_of_kernel = [](const MultibootLoadResult& r) {
    const uint64_t kb = r.kernel_begin, ke = r.kernel_end;
    auto outside = [&](uint64_t b, uint64_t e) { return e <= kb || ke <= b; };
    CHECK(outside(r.entry.gdt_base, r.entry.gdt_base + r.entry.gdt_limit + 1));
    CHECK(outside(r.entry.rsp - 4096, r.entry.rsp));
    CHECK(outside(r.info_addr, r.info_addr + 116));
  };
  SECTION("kernel at 0x8000, over the classic stack") {
    auto img = Elf32Kernel();
    Elf32_Phdr ph;
    std::memcpy(&ph, img.data() + sizeof(Elf32_Ehdr), sizeof(ph));
    ph.p_paddr = 0x8000;
    std::memcpy(img.data() + sizeof(Elf32_Ehdr), &ph, sizeof(ph));
    auto r = LoadMultiboot(g.mem, img, {.cmdline = "low", .e820 = g.e820});
    REQUIRE(r.ok());
    CHECK(r->kernel_begin == 0x8000);
    CHECK(r->entry.rip == 0x8040);
    check_clear_of_kernel(*r);
    CHECK(r->entry.rbx == r->info_addr);
    CHECK(ReadString(g.mem, Read32(g.mem, r->info_addr + 16)) == "low");
    CHECK(Read64(g.mem, r->entry.gdt_base + 16) == kGdtCode32);
    // The kernel's bytes are intact: the loader wrote nothing over them.
    std::vector<uint8_t> seg(0x1000);
    REQUIRE(g.mem.Read(0x8000, seg).ok());
    CHECK(std::equal(seg.begin(), seg.end(), img.begin() + 0x1000));
  }
  SECTION("kernel filling low memory: the structures go above it") {
    auto img = Elf32Kernel();
    Elf32_Phdr ph;
    std::memcpy(&ph, img.data() + sizeof(Elf32_Ehdr), sizeof(ph));
    ph.p_paddr = 0x1000;
    ph.p_memsz = 0x9E000;  // [0x1000, 0x9F000): bss to the top of conventional memory
    std::memcpy(img.data() + sizeof(Elf32_Ehdr), &ph, sizeof(ph));
    auto r = LoadMultiboot(g.mem, img, {.e820 = g.e820});
    REQUIRE(r.ok());
    check_clear_of_kernel(*r);
    CHECK(r->info_addr >= 0x100000);
  }
  SECTION("the classic layout when the kernel leaves it free") {
    auto r = LoadMultiboot(g.mem, Elf32Kernel(), {.e820 = g.e820});
    REQUIRE(r.ok());
    CHECK(r->info_addr == boot_layout::kMultibootInfoAddr);
    CHECK(r->entry.gdt_base == boot_layout::kGdtAddr);
    CHECK(r->entry.rsp == boot_layout::kStackTop);
  }
}

TEST_CASE("Multiboot load errors") {
  Guest g;
  SECTION("segment beyond RAM") {
    auto img = Elf32Kernel();
    Elf32_Phdr ph;
    std::memcpy(&ph, img.data() + sizeof(Elf32_Ehdr), sizeof(ph));
    ph.p_paddr = 0x8000000;
    std::memcpy(img.data() + sizeof(Elf32_Ehdr), &ph, sizeof(ph));
    CHECK(!LoadMultiboot(g.mem, img, {.e820 = g.e820}).ok());
  }
  SECTION("segment past the end of the file") {
    auto img = Elf32Kernel();
    img.resize(0x1800);
    CHECK_THAT(std::string(LoadMultiboot(g.mem, img, {.e820 = g.e820}).status().message()),
               Catch::Contains("past the file"));
  }
  SECTION("module too large") {
    std::vector<uint8_t> huge(64 * kMiB, 0);
    auto r = LoadMultiboot(g.mem, Elf32Kernel(), {.modules = {{huge, "x"}}, .e820 = g.e820});
    CHECK(r.status().code() == absl::StatusCode::kResourceExhausted);
  }
  SECTION("strings overflowing the info area") {
    auto r = LoadMultiboot(g.mem, Elf32Kernel(), {.cmdline = std::string(0x10000, 'c'), .e820 = g.e820});
    CHECK(r.status().code() == absl::StatusCode::kResourceExhausted);
  }
  SECTION("not ELF and no address fields") {
    std::vector<uint8_t> b(0x100, 0);
    PutMultibootHeader(b, 0, 0);
    CHECK_THAT(std::string(LoadMultiboot(g.mem, b, {.e820 = g.e820}).status().message()),
               Catch::Contains("not an ELF"));
  }
}

}  // namespace
}  // namespace coalesce
