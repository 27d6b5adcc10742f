#include "hypervisor/boot/linux_loader.h"

#include <asm/bootparam.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "hypervisor/boot/boot_layout.h"
#include "hypervisor/boot/bzimage_header.h"
#include "hypervisor/boot/initrd_placement.h"
#include "hypervisor/boot/kernel_image.h"
#include "tests/unit/boot/fake_bzimage.h"

namespace coalesce {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;

template <typename T>
T Peek(std::span<const uint8_t> b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

using FakeKernel = testing::FakeBzImage;

struct Guest {
  explicit Guest(uint64_t size = 256 * kMiB) : mem(GuestMemory::Create(size).value()) {
    e820 = E820Map::ForRegions(mem.regions()).Entries();
  }
  GuestMemory mem;
  std::vector<E820Entry> e820;
  std::vector<uint8_t> ZeroPage() const {
    std::vector<uint8_t> zp(sizeof(boot_params));
    REQUIRE(mem.Read(boot_layout::kZeroPageAddr, zp).ok());
    return zp;
  }
};

TEST_CASE("bzImage header: the crafted image parses") {
  auto img = FakeKernel{}.Build();
  auto h = ParseBzImageHeader(img);
  REQUIRE(h.ok());
  CHECK(h->version == 0x020f);
  CHECK(h->relocatable);
  CHECK(h->kernel_offset == 5 * 512);
  CHECK(h->kernel_size == 64 * 1024);
  CHECK(h->header_end == 0x26c);
  CHECK(DetectKernelFormat(img) == KernelFormat::kLinuxBzImage);
}

TEST_CASE("bzImage header errors") {
  SECTION("truncated before the header") {
    auto img = FakeKernel{}.Build();
    img.resize(0x100);
    auto h = ParseBzImageHeader(img);
    CHECK(h.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(h.status().message()), Catch::Contains("truncated"));
  }
  SECTION("truncated payload") {
    auto img = FakeKernel{}.Build();
    img.resize(img.size() - 100);
    auto h = ParseBzImageHeader(img);
    CHECK_THAT(std::string(h.status().message()), Catch::Contains("truncated"));
  }
  SECTION("not a bzImage") {
    auto img = FakeKernel{}.Build();
    std::memcpy(&img[0x202], "ELF!", 4);
    auto h = ParseBzImageHeader(img);
    CHECK(h.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(h.status().message()), Catch::Contains("not a Linux bzImage"));
    CHECK(DetectKernelFormat(img) == KernelFormat::kUnknown);
  }
  SECTION("zImage") {
    FakeKernel k;
    k.loadflags = 0;
    auto h = ParseBzImageHeader(k.Build());
    CHECK_THAT(std::string(h.status().message()), Catch::Contains("zImage"));
  }
  SECTION("protocol too old") {
    FakeKernel k;
    k.version = 0x020a;
    auto h = ParseBzImageHeader(k.Build());
    CHECK(h.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(h.status().message()), Catch::Contains("too old"));
  }
  SECTION("no 64-bit entry") {
    FakeKernel k;
    k.xloadflags = 0;
    auto h = ParseBzImageHeader(k.Build());
    CHECK(h.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(h.status().message()), Catch::Contains("XLF_KERNEL_64"));
  }
}

TEST_CASE("Linux load: zero page, command line, kernel, initrd and entry state") {
  Guest g;
  auto img = FakeKernel{}.Build();
  std::vector<uint8_t> initrd(3 * kMiB + 123, 0x5A);
  LinuxBootOptions opt{.cmdline = "console=ttyS0 quiet", .initrd = initrd, .e820 = g.e820, .acpi_rsdp_addr = 0xE0000};
  auto r = LoadLinux(g.mem, img, opt);
  REQUIRE(r.ok());
  // Relocatable: loaded at pref_address.
  CHECK(r->kernel_addr == 16 * kMiB);
  CHECK(r->entry.rip == 16 * kMiB + 0x200);
  CHECK(r->entry.mode == BootCpuMode::kLong64);
  CHECK(r->entry.rsi == boot_layout::kZeroPageAddr);
  CHECK(r->entry.code_selector == 0x10);
  CHECK(r->entry.data_selector == 0x18);

  std::vector<uint8_t> payload(64 * 1024);
  REQUIRE(g.mem.Read(r->kernel_addr, payload).ok());
  CHECK(std::equal(payload.begin(), payload.end(), img.begin() + 5 * 512));

  auto zp = g.ZeroPage();
  CHECK(Peek<uint16_t>(zp, 0x1fe) == 0xAA55);
  CHECK(std::memcmp(&zp[0x202], "HdrS", 4) == 0);
  CHECK(zp[0x210] == 0xff);                     // type_of_loader
  CHECK((zp[0x211] & (LOADED_HIGH | CAN_USE_HEAP)) == (LOADED_HIGH | CAN_USE_HEAP));
  CHECK(Peek<uint16_t>(zp, 0x224) == 0xfe00);   // heap_end_ptr
  CHECK(Peek<uint32_t>(zp, 0x214) == 16 * kMiB);  // code32_start
  CHECK(Peek<uint64_t>(zp, 0x070) == 0xE0000);  // acpi_rsdp_addr
  const uint32_t cmd_ptr = Peek<uint32_t>(zp, 0x228);
  CHECK(cmd_ptr == boot_layout::kCmdlineAddr);
  std::vector<uint8_t> cmd(opt.cmdline.size() + 1);
  REQUIRE(g.mem.Read(cmd_ptr, cmd).ok());
  CHECK(std::string(reinterpret_cast<char*>(cmd.data())) == "console=ttyS0 quiet");

  // The initrd is at the top of RAM, page aligned, and its bytes are there.
  const uint32_t rd = Peek<uint32_t>(zp, 0x218);
  CHECK(Peek<uint32_t>(zp, 0x21c) == initrd.size());
  CHECK(rd % 4096 == 0);
  CHECK(rd + initrd.size() <= 256 * kMiB);
  CHECK(rd + initrd.size() > 256 * kMiB - 4096);
  CHECK(rd == r->initrd_addr);
  std::vector<uint8_t> back(initrd.size());
  REQUIRE(g.mem.Read(rd, back).ok());
  CHECK(back == initrd);

  // e820 copied in.
  REQUIRE(zp[0x1e8] == g.e820.size());
  for (size_t i = 0; i < g.e820.size(); ++i) {
    CHECK(Peek<uint64_t>(zp, 0x2d0 + 20 * i) == g.e820[i].addr);
    CHECK(Peek<uint64_t>(zp, 0x2d0 + 20 * i + 8) == g.e820[i].size);
    CHECK(Peek<uint32_t>(zp, 0x2d0 + 20 * i + 16) == static_cast<uint32_t>(g.e820[i].type));
  }

  // The identity map covers 4 GiB: PML4[0] -> PDPT with 4 entries -> 2 MiB pages.
  uint64_t pml4e = 0, pdpte3 = 0, pde_last = 0;
  REQUIRE(g.mem.Read(r->entry.cr3, {reinterpret_cast<uint8_t*>(&pml4e), 8}).ok());
  const uint64_t pdpt = pml4e & ~0xFFFULL;
  REQUIRE(g.mem.Read(pdpt + 3 * 8, {reinterpret_cast<uint8_t*>(&pdpte3), 8}).ok());
  REQUIRE(g.mem.Read((pdpte3 & ~0xFFFULL) + 511 * 8, {reinterpret_cast<uint8_t*>(&pde_last), 8}).ok());
  CHECK((pml4e & 1) == 1);
  CHECK((pde_last & ~0xFFFULL) == (4ULL << 30) - (2ULL << 20));
  CHECK((pde_last & 0x83) == 0x83);
  // GDT: __BOOT_CS is a 64-bit code segment.
  uint64_t cs_desc = 0;
  REQUIRE(g.mem.Read(r->entry.gdt_base + 0x10, {reinterpret_cast<uint8_t*>(&cs_desc), 8}).ok());
  CHECK(((cs_desc >> 53) & 1) == 1);
}

TEST_CASE("Linux load: a non-relocatable kernel goes to 1 MiB") {
  Guest g;
  FakeKernel k;
  k.relocatable = 0;
  auto r = LoadLinux(g.mem, k.Build(), {.cmdline = "", .initrd = {}, .e820 = g.e820});
  REQUIRE(r.ok());
  CHECK(r->kernel_addr == kMiB);
  CHECK(r->kernel_extent_end == 16 * kMiB + 8 * kMiB);
  CHECK(r->initrd_addr == 0);
}

TEST_CASE("Linux load errors") {
  Guest g;
  auto img = FakeKernel{}.Build();
  SECTION("command line too long for the kernel") {
    std::string cmd(2048, 'x');
    auto r = LoadLinux(g.mem, img, {.cmdline = cmd, .initrd = {}, .e820 = g.e820});
    CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(r.status().message()), Catch::Contains("command line too long"));
    std::string ok(2047, 'x');
    CHECK(LoadLinux(g.mem, img, {.cmdline = ok, .initrd = {}, .e820 = g.e820}).ok());
  }
  SECTION("initrd too large") {
    std::vector<uint8_t> big(240 * kMiB, 1);
    auto r = LoadLinux(g.mem, img, {.cmdline = "", .initrd = big, .e820 = g.e820});
    CHECK(r.status().code() == absl::StatusCode::kResourceExhausted);
    CHECK_THAT(std::string(r.status().message()), Catch::Contains("initrd too large"));
  }
  SECTION("guest memory too small for the kernel") {
    Guest small(16 * kMiB);
    auto r = LoadLinux(small.mem, img, {.cmdline = "", .initrd = {}, .e820 = small.e820});
    CHECK(r.status().code() == absl::StatusCode::kResourceExhausted);
  }
  SECTION("truncated image") {
    img.resize(0x300);
    auto r = LoadLinux(g.mem, img, {.cmdline = "", .initrd = {}, .e820 = g.e820});
    CHECK_THAT(std::string(r.status().message()), Catch::Contains("truncated"));
  }
}

TEST_CASE("Initrd placement limits") {
  std::vector<E820Entry> e820 = E820Map::ForRegions(GuestMemory::Layout(6ULL << 30)).Entries();
  const std::vector<AddressRange> kernel = {{0, 0x30000}, {kMiB, 64 * kMiB}};
  SECTION("highest address below initrd_addr_max") {
    auto at = PlaceInitrd(e820, 10 * kMiB, 0x7fffffff, kernel);
    REQUIRE(at.ok());
    CHECK(*at == 0x80000000 - 10 * kMiB);
  }
  SECTION("never above 4 GiB, never in the PCI hole, even with a large initrd_addr_max") {
    auto at = PlaceInitrd(e820, 10 * kMiB, 0xffffffffffffULL, kernel);
    REQUIRE(at.ok());
    CHECK(*at + 10 * kMiB == kPciHoleStart);
  }
  SECTION("an odd size ends as high as page alignment allows") {
    auto at = PlaceInitrd(e820, 4097, 0x7fffffff, kernel);
    REQUIRE(at.ok());
    CHECK(*at == 0x80000000 - 0x2000);
  }
  SECTION("below the kernel when above it is full") {
    std::vector<E820Entry> tight = {{0, 0x9fc00, E820Type::kRam}, {kMiB, 72 * kMiB, E820Type::kRam}};
    auto at = PlaceInitrd(tight, 9 * kMiB, 0x7fffffff, kernel);
    REQUIRE(at.ok());
    CHECK(*at == 64 * kMiB);
    auto below = PlaceInitrd(tight, 0x40000, 0x7fffffff, {{0, 0x30000}, {kMiB, 73 * kMiB}});
    REQUIRE(below.ok());
    CHECK(*below == 0x9fc00 - 0x40000 - 0xc00);
  }
  SECTION("too large") {
    auto at = PlaceInitrd(e820, 3ULL << 30, 0x7fffffff, kernel);
    CHECK(at.status().code() == absl::StatusCode::kResourceExhausted);
  }
}

// The real Debian kernel, when scripts/guest-assets.sh has fetched it (scripts/test.sh always does).
TEST_CASE("Debian cloud kernel: header and load") {
  const char* dir = std::getenv("COALESCE_GUEST_ASSETS");
  const std::string kernel = std::string(dir ? dir : "guest-assets") + "/vmlinuz";
  if (!std::filesystem::exists(kernel)) {
    WARN("no " << kernel << ": the real-kernel checks did not run (run scripts/guest-assets.sh); "
                            "the crafted-header tests above still cover the parser");
    return;
  }
  auto img = ReadFileBytes(kernel);
  REQUIRE(img.ok());
  auto h = ParseBzImageHeader(*img);
  REQUIRE(h.ok());
  CHECK(h->version >= 0x020c);
  CHECK(h->relocatable);
  CHECK((h->xloadflags & XLF_KERNEL_64) != 0);
  CHECK(h->pref_address == 0x1000000);
  CHECK(h->cmdline_size >= 2047);

  Guest g(512 * kMiB);
  std::vector<uint8_t> initrd(2 * kMiB, 7);
  const std::string initrd_path = std::string(dir ? dir : "guest-assets") + "/initramfs.cpio";
  auto real_initrd = ReadFileBytes(initrd_path);
  if (real_initrd.ok()) initrd = *real_initrd;
  // The in-guest decompressor path; vmlinux_loader_test covers the default (decompressed on the host).
  auto r = LoadLinux(g.mem, *img,
                     {.cmdline = "console=ttyS0", .initrd = initrd, .e820 = g.e820, .decompress_on_host = false});
  REQUIRE(r.ok());
  CHECK_FALSE(r->decompressed_on_host);
  CHECK(r->kernel_addr == 0x1000000);
  CHECK(r->entry.rip == 0x1000200);
  CHECK(r->initrd_addr >= r->kernel_extent_end);
  auto zp = g.ZeroPage();
  CHECK(Peek<uint32_t>(zp, 0x218) == r->initrd_addr);
  // startup_64 is where the 64-bit entry lands: the first bytes at load + 0x200 are the file's.
  std::vector<uint8_t> code(16);
  REQUIRE(g.mem.Read(r->entry.rip, code).ok());
  CHECK(std::equal(code.begin(), code.end(), img->begin() + h->kernel_offset + 0x200));
}

}  // namespace
}  // namespace coalesce
