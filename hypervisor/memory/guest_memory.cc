#include "hypervisor/memory/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/kvm/vm_fd.h"

namespace coalesce {

std::vector<MemoryRegion> GuestMemory::Layout(uint64_t size, uint64_t hotplug_size) {
  std::vector<MemoryRegion> out;
  uint64_t low = size < kPciHoleStart ? size : kPciHoleStart;
  out.push_back({0, low, 0});
  if (size > low) out.push_back({kPciHoleEnd, size - low, low});
  if (hotplug_size > 0) out.push_back({HotplugBase(size), hotplug_size, size});
  return out;
}

uint64_t GuestMemory::HotplugBase(uint64_t size) {
  const uint64_t end = size <= kPciHoleStart ? kPciHoleEnd : kPciHoleEnd + (size - kPciHoleStart);
  const uint64_t align = platform::kMemoryHotplugAlign;
  return (end + align - 1) / align * align;
}

absl::StatusOr<GuestMemory> GuestMemory::Create(uint64_t size, uint64_t hotplug_size) {
  if (size < kMinGuestMemory) {
    return absl::InvalidArgumentError(
        absl::StrFormat("guest memory %u bytes is too small: at least %u MiB", size, kMinGuestMemory >> 20));
  }
  if (size % 4096 != 0) return absl::InvalidArgumentError("guest memory must be a multiple of 4 KiB");
  if (hotplug_size % platform::kMemoryHotplugSlotSize != 0 ||
      hotplug_size / platform::kMemoryHotplugSlotSize > platform::kHotplugMaxSlots) {
    return absl::InvalidArgumentError(
        absl::StrFormat("hot-pluggable guest memory %u bytes: a multiple of 128 MiB, at most %u slots of it",
                        hotplug_size, platform::kHotplugMaxSlots));
  }
  const uint64_t total = size + hotplug_size;
  int fd = ::memfd_create("coalesce-guest-ram", MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus("memfd_create");
  UniqueFd owned(fd);
  if (::ftruncate(fd, static_cast<off_t>(total)) < 0) return ErrnoStatus("ftruncate guest RAM memfd");
  ASSIGN_OR_RETURN(Mapping map,
                   Mapping::Map(total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0, "mmap guest RAM"));
  return GuestMemory(std::move(owned), std::move(map), size, hotplug_size);
}

std::vector<MemoryRegion> GuestMemory::CarveHoles(const std::vector<MemoryRegion>& regions,
                                                  std::span<const std::pair<uint64_t, uint64_t>> holes) {
  std::vector<MemoryRegion> out;
  for (MemoryRegion r : regions) {
    for (const auto& [start, end] : holes) {
      const uint64_t r_end = r.guest_phys + r.size;
      if (end <= r.guest_phys || start >= r_end) continue;
      if (start > r.guest_phys) out.push_back({r.guest_phys, start - r.guest_phys, r.file_offset});
      const uint64_t resume = std::min(end, r_end);
      r.file_offset += resume - r.guest_phys;
      r.size = r_end - resume;
      r.guest_phys = resume;
      if (r.size == 0) break;
    }
    if (r.size > 0) out.push_back(r);
  }
  return out;
}

absl::Status GuestMemory::RegisterWith(VmFd& vm, std::span<const std::pair<uint64_t, uint64_t>> holes) const {
  const std::vector<MemoryRegion> slots = CarveHoles(regions_, holes);
  for (size_t i = 0; i < slots.size(); ++i) {
    const auto& r = slots[i];
    RETURN_IF_ERROR(vm.SetUserMemoryRegion(static_cast<uint32_t>(i), r.guest_phys, r.size,
                                           mapping_.data() + r.file_offset));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> GuestMemory::FileOffset(const std::vector<MemoryRegion>& regions, uint64_t gpa,
                                                 uint64_t len) {
  for (const auto& r : regions) {
    if (gpa >= r.guest_phys && len <= r.size && gpa - r.guest_phys <= r.size - len) {
      return r.file_offset + (gpa - r.guest_phys);
    }
  }
  return absl::OutOfRangeError(
      absl::StrFormat("guest-physical range [%#x, %#x) is not RAM", gpa, gpa + len));
}

bool GuestMemory::Contains(uint64_t gpa, uint64_t len) const { return FileOffset(regions_, gpa, len).ok(); }

absl::StatusOr<std::span<uint8_t>> GuestMemory::HostSpan(uint64_t gpa, uint64_t len) const {
  ASSIGN_OR_RETURN(const uint64_t offset, FileOffset(regions_, gpa, len));
  return std::span<uint8_t>(mapping_.data() + offset, len);
}

absl::Status GuestMemory::Read(uint64_t gpa, std::span<uint8_t> out) const {
  ASSIGN_OR_RETURN(auto src, HostSpan(gpa, out.size()));
  std::memcpy(out.data(), src.data(), out.size());
  return absl::OkStatus();
}

absl::Status GuestMemory::Write(uint64_t gpa, std::span<const uint8_t> in) const {
  ASSIGN_OR_RETURN(auto dst, HostSpan(gpa, in.size()));
  std::memcpy(dst.data(), in.data(), in.size());
  return absl::OkStatus();
}

}  // namespace coalesce
