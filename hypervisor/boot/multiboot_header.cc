#include "hypervisor/boot/multiboot_header.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace coalesce {
namespace {

constexpr size_t kBasicHeaderSize = 12;    // magic, flags, checksum
constexpr size_t kAddressHeaderSize = 32;  // + header_addr .. entry_addr
constexpr uint32_t kSupportedRequiredFlags = kMultibootPageAlignModules | kMultibootWantMemoryInfo;

uint32_t Read32(std::span<const uint8_t> image, size_t off) {
  uint32_t v;
  std::memcpy(&v, image.data() + off, 4);
  return v;
}

std::optional<size_t> FindHeader(std::span<const uint8_t> image) {
  const size_t end = std::min(image.size(), kMultibootSearchBytes);
  for (size_t off = 0; off + kBasicHeaderSize <= end; off += 4) {
    if (Read32(image, off) != kMultibootHeaderMagic) continue;
    uint32_t sum = Read32(image, off) + Read32(image, off + 4) + Read32(image, off + 8);
    if (sum == 0) return off;
  }
  return std::nullopt;
}

}  // namespace

bool HasMultibootHeader(std::span<const uint8_t> image) { return FindHeader(image).has_value(); }

absl::StatusOr<MultibootHeader> ParseMultibootHeader(std::span<const uint8_t> image) {
  std::optional<size_t> off = FindHeader(image);
  if (!off) {
    return absl::InvalidArgumentError(
        "not a Multiboot kernel: no header (magic 0x1BADB002 with a valid checksum) in the first 8 KiB");
  }
  MultibootHeader h;
  h.offset = *off;
  h.flags = Read32(image, *off + 4);
  const uint32_t required = h.flags & 0xFFFF;
  if (required & kMultibootWantVideoMode) {
    return absl::UnimplementedError(
        "Multiboot kernel requires video mode information (flag 2): this machine has only a serial console");
  }
  if (required & ~kSupportedRequiredFlags) {
    return absl::UnimplementedError(absl::StrFormat(
        "Multiboot kernel requires features this loader does not know (flags %#x)", required & ~kSupportedRequiredFlags));
  }
  if (h.flags & kMultibootAddressFields) {
    if (image.size() - *off < kAddressHeaderSize) {
      return absl::InvalidArgumentError("Multiboot header truncated: the file ends inside its address fields");
    }
    h.address = MultibootAddressFields{
        .header_addr = Read32(image, *off + 12),
        .load_addr = Read32(image, *off + 16),
        .load_end_addr = Read32(image, *off + 20),
        .bss_end_addr = Read32(image, *off + 24),
        .entry_addr = Read32(image, *off + 28),
    };
  }
  return h;
}

}  // namespace coalesce
