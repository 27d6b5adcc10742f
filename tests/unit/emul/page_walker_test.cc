// The guest page walker on page tables built in a real GuestMemory (a memfd; no /dev/kvm needed).
#include <catch2/catch.hpp>
#include <cstring>

#include "hypervisor/emul/guest_page_walker.h"
#include "hypervisor/emul/instruction_completer.h"

namespace coalesce {
namespace {

constexpr uint64_t kP = 1, kW = 2, kU = 4, kA = 1 << 5, kD = 1 << 6, kPs = 1 << 7;

uint64_t& Entry(const GuestMemory& mem, uint64_t table, int index) {
  return *reinterpret_cast<uint64_t*>(mem.HostSpan(table + 8 * index, 8)->data());
}

TEST_CASE("page walk: translation, permissions, accessed and dirty bits") {
  auto mem = GuestMemory::Create(16 << 20);
  REQUIRE(mem.ok());
  // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000. Linear 0x200000.. (PD index 1) uses the PT;
  // linear 0x400000 (PD index 2) is a 2 MiB user page.
  Entry(*mem, 0x1000, 0) = 0x2000 | kP | kW | kU;
  Entry(*mem, 0x2000, 0) = 0x3000 | kP | kW | kU;
  Entry(*mem, 0x3000, 1) = 0x4000 | kP | kW;  // supervisor-only below
  Entry(*mem, 0x3000, 2) = 0x600000 | kP | kW | kU | kPs;
  Entry(*mem, 0x4000, 0) = 0x9000 | kP | kW;  // 0x200000 -> 0x9000, writable
  Entry(*mem, 0x4000, 1) = 0xa000 | kP;       // 0x201000 -> 0xa000, read-only
  PagingContext paging{kCr0Pg | kCr0Pe | kCr0Wp, 0x1000, kCr4Pae, false};

  auto w = WalkGuestPageTables(*mem, paging, 0x200123, {.write = true, .user = false});
  REQUIRE(w.ok());
  CHECK(!w->fault);
  CHECK(w->gpa == 0x9123);
  CHECK((Entry(*mem, 0x4000, 0) & (kA | kD)) == (kA | kD));
  CHECK((Entry(*mem, 0x1000, 0) & kA) != 0);

  w = WalkGuestPageTables(*mem, paging, 0x201008, {.write = false, .user = false});
  REQUIRE(w.ok());
  CHECK(w->gpa == 0xa008);
  CHECK((Entry(*mem, 0x4000, 1) & kD) == 0);

  w = WalkGuestPageTables(*mem, paging, 0x201008, {.write = true, .user = false});
  REQUIRE(w->fault.has_value());
  CHECK(*w->fault == Fault::PageFault(0x201008, kPfWrite | kPfPresent));
  PagingContext no_wp = paging;
  no_wp.cr0 &= ~kCr0Wp;  // supervisor writes ignore R/W without CR0.WP
  CHECK(!WalkGuestPageTables(*mem, no_wp, 0x201008, {.write = true, .user = false})->fault);

  w = WalkGuestPageTables(*mem, paging, 0x200000, {.write = false, .user = true});
  CHECK(*w->fault == Fault::PageFault(0x200000, kPfUser | kPfPresent));

  w = WalkGuestPageTables(*mem, paging, 0x202000, {.write = false, .user = false});
  CHECK(*w->fault == Fault::PageFault(0x202000, 0));

  w = WalkGuestPageTables(*mem, paging, 0x4abcde, {.write = false, .user = true});
  CHECK(w->gpa == 0x6abcde);
  PagingContext smap = paging;
  smap.cr4 |= kCr4Smap;
  CHECK(WalkGuestPageTables(*mem, smap, 0x4abcde, {.write = false, .user = false})->fault.has_value());
  smap.rflags_ac = true;
  CHECK(!WalkGuestPageTables(*mem, smap, 0x4abcde, {.write = false, .user = false})->fault.has_value());
}

TEST_CASE("instruction bytes come from the exit's emulation_failure overlay") {
  exit::InternalError e{KVM_INTERNAL_ERROR_EMULATION, 3, {}};
  e.data[0] = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
  const uint8_t raw[16] = {5, 0xf0, 0x48, 0x0f, 0xc7, 0x0f, 0xaa, 0xbb};
  std::memcpy(&e.data[1], raw, 16);
  CHECK(InstructionBytesFromExit(e) == std::vector<uint8_t>{0xf0, 0x48, 0x0f, 0xc7, 0x0f});
  e.data[0] = 0;
  CHECK(InstructionBytesFromExit(e).empty());
}

}  // namespace
}  // namespace coalesce
