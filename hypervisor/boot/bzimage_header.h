// The setup header of a Linux bzImage (Documentation/arch/x86/boot.rst), parsed and checked. Only what the
// 64-bit boot protocol needs is kept; the raw header bytes are copied into the zero page by LoadLinux().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/statusor.h"

namespace coalesce {

struct BzImageHeader {
  uint16_t version = 0;        // protocol version, e.g. 0x020f for 2.15
  uint8_t loadflags = 0;
  uint16_t xloadflags = 0;
  bool relocatable = false;
  uint32_t kernel_alignment = 0;
  uint32_t initrd_addr_max = 0;  // highest address the initrd's last byte may occupy
  uint32_t cmdline_size = 0;     // longest command line, without the NUL
  uint64_t pref_address = 0;     // where the kernel runs (LOAD_PHYSICAL_ADDR)
  uint32_t init_size = 0;        // bytes the kernel needs from its run address while decompressing
  uint32_t payload_offset = 0;   // compressed kernel: offset from the start of the protected-mode code
  uint32_t payload_length = 0;   // its length, the appended 4-byte uncompressed size included
  size_t header_end = 0;         // file offset one past the setup header (0x202 + byte at 0x201)
  size_t kernel_offset = 0;      // file offset of the protected-mode kernel: (setup_sects + 1) * 512
  size_t kernel_size = 0;        // bytes of protected-mode kernel in the file
};

// The oldest protocol accepted: 2.12 added xloadflags, which says whether the 64-bit entry exists.
inline constexpr uint16_t kMinBootProtocol = 0x020c;

// Errors (all InvalidArgument unless noted): the image is truncated; it is not a bzImage (no 0xAA55 boot
// flag or "HdrS" magic, or a zImage not loaded high); FailedPrecondition: the protocol is older than 2.12 or
// the kernel has no 64-bit entry point (XLF_KERNEL_64).
absl::StatusOr<BzImageHeader> ParseBzImageHeader(std::span<const uint8_t> image);

// True if `image` carries the boot flag and "HdrS" magic (without checking anything else).
bool LooksLikeBzImage(std::span<const uint8_t> image);

}  // namespace coalesce
