// Guest RAM: one memfd mapped MAP_SHARED, split into guest-physical regions below and above the PCI hole.
// The same memfd serves KVM (memslots), the DSM (userfaultfd on this mapping) and vhost-user back ends.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/base/mapping.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {

class VmFd;

// Guest-physical layout constants shared by memory, firmware tables and devices.
inline constexpr uint64_t kPciHoleStart = 0xC000'0000ULL;  // 3 GiB: MMIO (IOAPIC, LAPIC, ...) lives above
inline constexpr uint64_t kPciHoleEnd = 0x1'0000'0000ULL;  // 4 GiB
inline constexpr uint64_t kMinGuestMemory = 16ULL << 20;

struct MemoryRegion {
  uint64_t guest_phys;
  uint64_t size;
  uint64_t file_offset;  // offset in the memfd and in the host mapping
};

class GuestMemory final {
 public:
  // Creates `size` bytes of RAM (a multiple of 4 KiB, at least kMinGuestMemory), and `hotplug_size` more (a
  // multiple of platform::kMemoryHotplugSlotSize) mapped at HotplugBase(size): RAM the guest may be given while
  // it runs (ACPI memory hotplug). The memfd holds both, the boot RAM first.
  static absl::StatusOr<GuestMemory> Create(uint64_t size, uint64_t hotplug_size = 0);

  // Registers every region as a KVM memslot (slots 0..n-1), leaving out `holes` (sorted, page-aligned,
  // guest-physical [start, end) pairs): guest accesses there exit to the VMM as MMIO. An edge node leaves out
  // the guest's home-only memory this way.
  absl::Status RegisterWith(VmFd& vm, std::span<const std::pair<uint64_t, uint64_t>> holes = {}) const;

  // The memslots RegisterWith makes: the regions minus the holes. Pure, exposed for tests.
  static std::vector<MemoryRegion> CarveHoles(const std::vector<MemoryRegion>& regions,
                                              std::span<const std::pair<uint64_t, uint64_t>> holes);

  // Host view of [gpa, gpa+len), which must lie inside one region. Errors name the address.
  [[nodiscard]] absl::StatusOr<std::span<uint8_t>> HostSpan(uint64_t gpa, uint64_t len) const;
  absl::Status Read(uint64_t gpa, std::span<uint8_t> out) const;
  absl::Status Write(uint64_t gpa, std::span<const uint8_t> in) const;
  [[nodiscard]] bool Contains(uint64_t gpa, uint64_t len) const;

  // Every mapped region, the hotplug area included: KVM's memslots, the DSM's pages, address lookups.
  [[nodiscard]] const std::vector<MemoryRegion>& regions() const { return regions_; }
  // The RAM present at boot: what the e820 map, the SRAT and the loaders describe.
  [[nodiscard]] std::vector<MemoryRegion> boot_ram() const { return Layout(boot_size()); }
  [[nodiscard]] uint64_t boot_size() const { return size_ - hotplug_size_; }
  // The hotplug area [HotplugBase(boot_size()), + hotplug_size()); 0: none.
  [[nodiscard]] uint64_t hotplug_size() const { return hotplug_size_; }
  [[nodiscard]] uint64_t size() const { return size_; }  // the whole memfd: boot RAM and hotplug area
  [[nodiscard]] int memfd() const { return fd_.get(); }
  [[nodiscard]] uint8_t* host_base() const { return mapping_.data(); }

  // Pure layout computation, exposed for tests: RAM below kPciHoleStart, the rest from 4 GiB up; and the
  // hotplug area, if any, after it.
  static std::vector<MemoryRegion> Layout(uint64_t size, uint64_t hotplug_size = 0);
  // Where the hotplug area starts: 1 GiB-aligned, at 4 GiB or above the boot RAM's end.
  static uint64_t HotplugBase(uint64_t size);
  // Where [gpa, gpa+len) lies in the memfd, if it is inside one of `regions` (OutOfRange naming it otherwise).
  // The one region lookup: Contains, HostSpan, the CLI's check of --home-only-memory and the DSM's page numbers
  // of it all use it.
  static absl::StatusOr<uint64_t> FileOffset(const std::vector<MemoryRegion>& regions, uint64_t gpa, uint64_t len);

 private:
  GuestMemory(UniqueFd fd, Mapping mapping, uint64_t size, uint64_t hotplug_size)
      : fd_(std::move(fd)),
        mapping_(std::move(mapping)),
        size_(size + hotplug_size),
        hotplug_size_(hotplug_size),
        regions_(Layout(size, hotplug_size)) {}
  UniqueFd fd_;
  Mapping mapping_;
  uint64_t size_;
  uint64_t hotplug_size_;
  std::vector<MemoryRegion> regions_;
};

}  // namespace coalesce
