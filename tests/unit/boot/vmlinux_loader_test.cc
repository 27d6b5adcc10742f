#include "hypervisor/boot/vmlinux_loader.h"

#include <asm/bootparam.h>
#include <elf.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "hypervisor/boot/boot_layout.h"
#include "hypervisor/boot/e820_map.h"
#include "hypervisor/boot/kernel_image.h"
#include "hypervisor/boot/kernel_payload.h"
#include "hypervisor/boot/linux_loader.h"
#include "tests/unit/boot/fake_bzimage.h"
#include "tests/unit/boot/test_compressors.h"

namespace coalesce {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

struct Guest {
  explicit Guest(uint64_t size = 256 * kMiB) : mem(GuestMemory::Create(size).value()) {
    e820 = E820Map::ForRegions(mem.regions()).Entries();
    // Poison RAM so that zeroed bss and untouched bytes are told apart.
    std::memset(mem.host_base(), 0xAA, size);
  }
  std::vector<uint8_t> Bytes(uint64_t gpa, size_t n) const {
    std::vector<uint8_t> b(n);
    REQUIRE(mem.Read(gpa, b).ok());
    return b;
  }
  GuestMemory mem;
  std::vector<E820Entry> e820;
};

template <typename T>
T Peek(const std::vector<uint8_t>& b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

TEST_CASE("vmlinux: segments at p_paddr, bss zeroed, physical entry") {
  Guest g;
  testing::FakeVmlinux f;
  const auto elf = f.Build();
  auto r = LoadVmlinux(g.mem, elf);
  REQUIRE(r.ok());
  CHECK(r->entry == f.entry);
  CHECK(r->lowest == f.text_paddr);
  CHECK(r->highest_end == f.data_paddr + f.data_memsz);
  // text: the file's bytes at the physical address, not at the (virtual-0) per-CPU segment.
  auto text = g.Bytes(f.text_paddr, f.text_size);
  CHECK(std::equal(text.begin(), text.end(), elf.begin() + 0x1000));
  auto percpu = g.Bytes(f.percpu_paddr, f.percpu_size);
  CHECK(std::equal(percpu.begin(), percpu.end(), elf.begin() + 0x1000 + static_cast<long>(f.text_size)));
  auto data = g.Bytes(f.data_paddr, f.data_memsz);
  CHECK(std::equal(data.begin(), data.begin() + static_cast<long>(f.data_filesz), elf.end() - static_cast<long>(f.data_filesz)));
  CHECK(std::all_of(data.begin() + static_cast<long>(f.data_filesz), data.end(), [](uint8_t b) { return b == 0; }));
  // Past the bss, memory is untouched.
  CHECK(g.Bytes(f.data_paddr + f.data_memsz, 1)[0] == 0xAA);
}

TEST_CASE("vmlinux errors") {
  Guest g;
  testing::FakeVmlinux f;
  SECTION("not ELF") {
    std::vector<uint8_t> junk(4096, 0x42);
    CHECK_THAT(Message(LoadVmlinux(g.mem, junk).status()), Catch::Contains("not an ELF"));
  }
  SECTION("32-bit ELF") {
    f.elf_class = ELFCLASS32;
    CHECK_THAT(Message(LoadVmlinux(g.mem, f.Build()).status()), Catch::Contains("64-bit"));
  }
  SECTION("entry outside the segments, the 1 MiB boot area is off limits, RAM too small") {
    f.entry = 0xffffffff81000000ULL;  // a virtual entry would be a bug: we take e_entry as physical
    CHECK_THAT(Message(LoadVmlinux(g.mem, f.Build()).status()), Catch::Contains("outside its loaded segments"));
    testing::FakeVmlinux low;
    low.text_paddr = low.entry = 0x80000;
    CHECK_THAT(Message(LoadVmlinux(g.mem, low.Build()).status()), Catch::Contains("boot structures"));
    testing::FakeVmlinux high;
    high.data_paddr = 300 * kMiB;
    CHECK_THAT(Message(LoadVmlinux(g.mem, high.Build()).status()), Catch::Contains("not in guest RAM"));
  }
  SECTION("truncated ELF") {
    auto elf = f.Build();
    elf.resize(elf.size() - 16);
    CHECK(LoadVmlinux(g.mem, elf).status().code() == absl::StatusCode::kInvalidArgument);
  }
}

// A bzImage whose payload is our fake vmlinux, compressed the kernel's way.
std::vector<uint8_t> BzImageWithVmlinux(PayloadCompression c, const testing::FakeVmlinux& f) {
  testing::FakeBzImage k;
  k.compressed = testing::KernelStylePayload(c, f.Build());
  return k.Build();
}

TEST_CASE("LoadLinux decompresses on the host by default and enters vmlinux") {
  using P = PayloadCompression;
  const P format = GENERATE(P::kLz4Legacy, P::kGzip, P::kXz, P::kZstd);
  INFO(PayloadCompressionName(format));
  Guest g;
  testing::FakeVmlinux f;
  const auto img = BzImageWithVmlinux(format, f);
  std::vector<uint8_t> initrd(2 * kMiB + 5, 0x5A);
  LinuxBootOptions opt{.cmdline = "console=ttyS0", .initrd = initrd, .e820 = g.e820, .acpi_rsdp_addr = 0xE0000};
  auto r = LoadLinux(g.mem, img, opt);
  REQUIRE(r.ok());
  CHECK(r->decompressed_on_host);
  CHECK(r->entry.rip == f.entry);
  CHECK(r->entry.mode == BootCpuMode::kLong64);
  CHECK(r->entry.rsi == boot_layout::kZeroPageAddr);
  CHECK(r->kernel_addr == f.text_paddr);
  // Extent: pref_address (16 MiB) + init_size (8 MiB) covers the fake ELF's span.
  CHECK(r->kernel_extent_end == 24 * kMiB);
  CHECK(r->initrd_addr >= r->kernel_extent_end);
  CHECK(g.Bytes(r->initrd_addr, initrd.size()) == initrd);
  auto text = g.Bytes(f.text_paddr, 16);
  const auto elf = f.Build();
  CHECK(std::equal(text.begin(), text.end(), elf.begin() + 0x1000));
  // The zero page is built as for the compressed path; KASLR_FLAG is clear (we did not randomize).
  auto zp = g.Bytes(boot_layout::kZeroPageAddr, sizeof(boot_params));
  CHECK(Peek<uint16_t>(zp, 0x1fe) == 0xAA55);
  CHECK(std::memcmp(&zp[0x202], "HdrS", 4) == 0);
  CHECK((zp[0x211] & KASLR_FLAG) == 0);
  CHECK((zp[0x211] & LOADED_HIGH) != 0);
  CHECK(Peek<uint32_t>(zp, 0x228) == boot_layout::kCmdlineAddr);
  CHECK(Peek<uint32_t>(zp, 0x218) == r->initrd_addr);
  CHECK(Peek<uint32_t>(zp, 0x21c) == initrd.size());
  CHECK(Peek<uint64_t>(zp, 0x070) == 0xE0000);
  CHECK(zp[0x1e8] == g.e820.size());
}

TEST_CASE("LoadLinux: a vmlinux larger than init_size widens the kernel's extent") {
  Guest g;
  testing::FakeVmlinux f;
  f.data_paddr = 30 * kMiB;
  f.data_memsz = 3 * kMiB;  // ends at 33 MiB, past pref + init_size (24 MiB)
  auto r = LoadLinux(g.mem, BzImageWithVmlinux(PayloadCompression::kLz4Legacy, f),
                     {.cmdline = "", .initrd = std::vector<uint8_t>(kMiB, 1), .e820 = g.e820});
  REQUIRE(r.ok());
  CHECK(r->kernel_extent_end == 33 * kMiB);
  CHECK(r->initrd_addr >= 33 * kMiB);
}

TEST_CASE("LoadLinux: decompress_on_host = false keeps the in-guest decompressor") {
  Guest g;
  testing::FakeVmlinux f;
  const auto img = BzImageWithVmlinux(PayloadCompression::kLz4Legacy, f);
  auto r = LoadLinux(g.mem, img, {.cmdline = "", .initrd = {}, .e820 = g.e820, .decompress_on_host = false});
  REQUIRE(r.ok());
  CHECK_FALSE(r->decompressed_on_host);
  CHECK(r->kernel_addr == 16 * kMiB);
  CHECK(r->entry.rip == 16 * kMiB + 0x200);
  auto code = g.Bytes(16 * kMiB, 64);
  CHECK(std::equal(code.begin(), code.end(), img.begin() + 5 * 512));
}

TEST_CASE("LoadLinux: formats we do not decompress boot through the kernel's decompressor") {
  Guest g;
  testing::FakeBzImage k;
  k.compressed = {'B', 'Z', 'h', '9', 1, 2, 3, 4, 0, 0, 1, 0};
  auto r = LoadLinux(g.mem, k.Build(), {.cmdline = "", .initrd = {}, .e820 = g.e820});
  REQUIRE(r.ok());
  CHECK_FALSE(r->decompressed_on_host);
  CHECK(r->entry.rip == 16 * kMiB + 0x200);
  // No payload fields at all (the crafted images of linux_loader_test): the same.
  auto plain = LoadLinux(g.mem, testing::FakeBzImage{}.Build(), {.cmdline = "", .initrd = {}, .e820 = g.e820});
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->decompressed_on_host);
}

TEST_CASE("LoadLinux: a corrupt payload in a format we handle is an error, not a fallback") {
  Guest g;
  testing::FakeBzImage k;
  k.compressed = testing::KernelStylePayload(PayloadCompression::kLz4Legacy, testing::FakeVmlinux{}.Build());
  k.compressed[4] = static_cast<uint8_t>(k.compressed[4] - 1);
  auto r = LoadLinux(g.mem, k.Build(), {.cmdline = "", .initrd = {}, .e820 = g.e820});
  CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(Message(r.status()), Catch::Contains("decompressing the kernel on the host"));

  SECTION("truncated: the size word says more than the stream holds") {
    testing::FakeBzImage t;
    const auto elf = testing::FakeVmlinux{}.Build();
    t.compressed = testing::Lz4LegacyCompress(elf);
    testing::AppendLe32(t.compressed, static_cast<uint32_t>(elf.size() + 4096));
    auto tr = LoadLinux(g.mem, t.Build(), {.cmdline = "", .initrd = {}, .e820 = g.e820});
    CHECK_THAT(Message(tr.status()), Catch::Contains("truncated"));
  }
  SECTION("decompresses, but not to an ELF") {
    testing::FakeBzImage t;
    t.compressed = testing::KernelStylePayload(PayloadCompression::kZstd, std::vector<uint8_t>(8192, 0x42));
    auto tr = LoadLinux(g.mem, t.Build(), {.cmdline = "", .initrd = {}, .e820 = g.e820});
    CHECK_THAT(Message(tr.status()), Catch::Contains("not an ELF"));
  }
  SECTION("guest memory too small") {
    Guest small(20 * kMiB);
    testing::FakeBzImage t;
    t.compressed = testing::KernelStylePayload(PayloadCompression::kLz4Legacy, testing::FakeVmlinux{}.Build());
    auto tr = LoadLinux(small.mem, t.Build(), {.cmdline = "", .initrd = {}, .e820 = small.e820});
    CHECK(tr.status().code() == absl::StatusCode::kResourceExhausted);
  }
}

// startup_64's address in System.map (virtual, __START_KERNEL_map-based), or 0 when absent.
uint64_t SystemMapStartup64(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string addr, type, name;
    if (ss >> addr >> type >> name && name == "startup_64") return std::stoull(addr, nullptr, 16);
  }
  return 0;
}

TEST_CASE("Debian cloud kernel: vmlinux loaded and entered at startup_64") {
  const char* dir = std::getenv("COALESCE_GUEST_ASSETS");
  const std::string assets = dir ? dir : "guest-assets";
  if (!std::filesystem::exists(assets + "/vmlinuz")) {
    WARN("no " << assets << "/vmlinuz: the real-kernel checks did not run (run scripts/guest-assets.sh)");
    return;
  }
  auto img = ReadFileBytes(assets + "/vmlinuz");
  REQUIRE(img.ok());
  auto vmlinux = DecompressKernelPayload(*img);
  REQUIRE(vmlinux.ok());
  Elf64_Ehdr eh;
  REQUIRE(vmlinux->size() >= sizeof(eh));
  std::memcpy(&eh, vmlinux->data(), sizeof(eh));

  Guest g(512 * kMiB);
  auto initrd = ReadFileBytes(assets + "/initramfs.cpio");
  std::vector<uint8_t> rd = initrd.ok() ? *initrd : std::vector<uint8_t>(2 * kMiB, 7);
  auto r = LoadLinux(g.mem, *img, {.cmdline = "console=ttyS0", .initrd = rd, .e820 = g.e820});
  REQUIRE(r.ok());
  CHECK(r->decompressed_on_host);
  CHECK(r->entry.rip == eh.e_entry);
  CHECK(r->kernel_addr == 0x1000000);  // LOAD_PHYSICAL_ADDR: no relocation
  CHECK(g.mem.Contains(r->entry.rip, 16));
  CHECK(r->initrd_addr >= r->kernel_extent_end);
  CHECK(r->initrd_addr + r->initrd_size <= 512 * kMiB);
  const uint64_t startup_64 = SystemMapStartup64(assets + "/System.map");
  if (startup_64 != 0) CHECK(r->entry.rip == startup_64 - 0xffffffff80000000ULL);

  // Every PT_LOAD segment's file bytes are in guest memory at p_paddr, its bss zeroed.
  int loads = 0;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, vmlinux->data() + eh.e_phoff + i * sizeof(ph), sizeof(ph));
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    ++loads;
    INFO("segment " << i << " paddr " << std::hex << ph.p_paddr);
    CHECK(r->kernel_extent_end >= ph.p_paddr + ph.p_memsz);
    auto got = g.Bytes(ph.p_paddr, ph.p_filesz);
    CHECK(std::equal(got.begin(), got.end(), vmlinux->begin() + static_cast<long>(ph.p_offset)));
    if (ph.p_memsz > ph.p_filesz) {
      auto bss = g.Bytes(ph.p_paddr + ph.p_filesz, std::min<uint64_t>(ph.p_memsz - ph.p_filesz, 1 << 20));
      CHECK(std::all_of(bss.begin(), bss.end(), [](uint8_t b) { return b == 0; }));
    }
  }
  CHECK(loads >= 2);
}

}  // namespace
}  // namespace coalesce
