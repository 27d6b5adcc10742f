// The Multiboot (v1) header a kernel carries in its first 8 KiB (Multiboot Specification 0.6.96, section 3.1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "absl/status/statusor.h"

namespace coalesce {

inline constexpr uint32_t kMultibootHeaderMagic = 0x1BADB002;
inline constexpr uint32_t kMultibootBootloaderMagic = 0x2BADB002;  // EAX at entry
inline constexpr size_t kMultibootSearchBytes = 8192;

// Header flags.
inline constexpr uint32_t kMultibootPageAlignModules = 1u << 0;
inline constexpr uint32_t kMultibootWantMemoryInfo = 1u << 1;
inline constexpr uint32_t kMultibootWantVideoMode = 1u << 2;
inline constexpr uint32_t kMultibootAddressFields = 1u << 16;

struct MultibootAddressFields {
  uint32_t header_addr;
  uint32_t load_addr;
  uint32_t load_end_addr;  // 0: load to the end of the file
  uint32_t bss_end_addr;   // 0: no bss
  uint32_t entry_addr;
};

struct MultibootHeader {
  size_t offset = 0;  // of the magic, in the file
  uint32_t flags = 0;
  std::optional<MultibootAddressFields> address;  // present when flag 16 is set
};

// Finds the first 4-byte-aligned magic in the first 8 KiB whose checksum is right. Errors (InvalidArgument):
// no header; a header truncated by the end of the file; Unimplemented: a required feature we do not offer
// (video mode, flag 2, or an unknown bit in 0-15: the spec says the loader must then refuse).
absl::StatusOr<MultibootHeader> ParseMultibootHeader(std::span<const uint8_t> image);

// True if a header with a valid checksum is present (nothing else is checked).
bool HasMultibootHeader(std::span<const uint8_t> image);

}  // namespace coalesce
