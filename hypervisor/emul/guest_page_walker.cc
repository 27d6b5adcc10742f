#include "hypervisor/emul/guest_page_walker.h"

#include "hypervisor/base/status_macros.h"

namespace coalesce {
namespace {

constexpr uint64_t kPtePresent = 1ull << 0;
constexpr uint64_t kPteWritable = 1ull << 1;
constexpr uint64_t kPteUser = 1ull << 2;
constexpr uint64_t kPteAccessed = 1ull << 5;
constexpr uint64_t kPteDirty = 1ull << 6;
constexpr uint64_t kPteLarge = 1ull << 7;
constexpr uint64_t kPteAddressMask = 0x000f'ffff'ffff'f000ull;

}  // namespace

absl::StatusOr<PageWalk> WalkGuestPageTables(const GuestMemory& memory, const PagingContext& paging,
                                             uint64_t linear, MemoryAccess access) {
  if (!(paging.cr0 & kCr0Pg)) return PageWalk{linear, std::nullopt};
  const int levels = (paging.cr4 & kCr4La57) ? 5 : 4;
  const uint32_t code = (access.write ? kPfWrite : 0) | (access.user ? kPfUser : 0);
  uint64_t table = paging.cr3 & kPteAddressMask;
  bool writable = true, user = true;
  uint64_t* entries[5] = {};
  int used = 0;
  for (int level = levels; level >= 1; --level) {
    const unsigned shift = 12 + 9 * static_cast<unsigned>(level - 1);
    const uint64_t slot = table + ((linear >> shift) & 511) * 8;
    ASSIGN_OR_RETURN(std::span<uint8_t> bytes, memory.HostSpan(slot, 8));
    auto* entry = reinterpret_cast<uint64_t*>(bytes.data());
    const uint64_t pte = __atomic_load_n(entry, __ATOMIC_ACQUIRE);
    if (!(pte & kPtePresent)) return PageWalk{0, Fault::PageFault(linear, code)};
    writable = writable && (pte & kPteWritable);
    user = user && (pte & kPteUser);
    entries[used++] = entry;
    const bool leaf = level == 1 || ((level == 2 || level == 3) && (pte & kPteLarge));
    if (!leaf) {
      table = pte & kPteAddressMask;
      continue;
    }
    const uint64_t page_mask = (1ull << shift) - 1;
    const uint64_t gpa = ((pte & kPteAddressMask) & ~page_mask) | (linear & page_mask);

    bool allowed = true;
    if (access.user) {
      allowed = user && (!access.write || writable);
    } else {
      if (access.write && !writable && (paging.cr0 & kCr0Wp)) allowed = false;
      if (user && (paging.cr4 & kCr4Smap) && !paging.rflags_ac) allowed = false;
    }
    if (!allowed) return PageWalk{0, Fault::PageFault(linear, code | kPfPresent)};
    // The processor sets A in every entry it used and D in the leaf for a write; other vCPUs may be updating
    // the same entries, hence atomic ORs.
    for (int i = 0; i < used; ++i) __atomic_fetch_or(entries[i], kPteAccessed, __ATOMIC_SEQ_CST);
    if (access.write) __atomic_fetch_or(entry, kPteDirty, __ATOMIC_SEQ_CST);
    return PageWalk{gpa, std::nullopt};
  }
  return absl::InternalError("page walk fell through");
}

}  // namespace coalesce
