#include "hypervisor/boot/bzimage_header.h"

#include <asm/bootparam.h>

#include <cstring>

#include "absl/strings/str_format.h"

namespace coalesce {
namespace {

// File offsets of setup header fields (boot.rst, "The real-mode kernel header").
constexpr size_t kSetupSects = 0x1f1;
constexpr size_t kSyssize = 0x1f4;
constexpr size_t kBootFlag = 0x1fe;
constexpr size_t kJumpOffset = 0x201;
constexpr size_t kHeaderMagic = 0x202;
constexpr size_t kVersion = 0x206;
constexpr size_t kLoadflags = 0x211;
constexpr size_t kInitrdAddrMax = 0x22c;
constexpr size_t kKernelAlignment = 0x230;
constexpr size_t kRelocatable = 0x234;
constexpr size_t kXloadflags = 0x236;
constexpr size_t kCmdlineSize = 0x238;
constexpr size_t kPayloadOffset = 0x248;
constexpr size_t kPayloadLength = 0x24c;
constexpr size_t kPrefAddress = 0x258;
constexpr size_t kInitSize = 0x260;
constexpr size_t kHeader212End = 0x264;  // every field up to init_size exists from protocol 2.10 on
constexpr uint32_t kHdrS = 0x53726448;   // "HdrS"

static_assert(offsetof(boot_params, hdr) == kSetupSects);
static_assert(offsetof(boot_params, hdr) + offsetof(setup_header, init_size) == kInitSize);
static_assert(offsetof(boot_params, hdr) + offsetof(setup_header, xloadflags) == kXloadflags);
static_assert(offsetof(boot_params, hdr) + offsetof(setup_header, payload_offset) == kPayloadOffset);
static_assert(offsetof(boot_params, hdr) + offsetof(setup_header, payload_length) == kPayloadLength);

template <typename T>
T ReadLe(std::span<const uint8_t> image, size_t off) {
  T v{};
  std::memcpy(&v, image.data() + off, sizeof(T));
  return v;
}

}  // namespace

bool LooksLikeBzImage(std::span<const uint8_t> image) {
  return image.size() >= kVersion && ReadLe<uint16_t>(image, kBootFlag) == 0xAA55 &&
         ReadLe<uint32_t>(image, kHeaderMagic) == kHdrS;
}

absl::StatusOr<BzImageHeader> ParseBzImageHeader(std::span<const uint8_t> image) {
  if (image.size() < kVersion + 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kernel image truncated: %u bytes cannot hold a Linux setup header (needs %u)", image.size(), kVersion + 2));
  }
  if (!LooksLikeBzImage(image)) {
    return absl::InvalidArgumentError("not a Linux bzImage: no 0xAA55 boot flag and \"HdrS\" setup header magic");
  }
  BzImageHeader h;
  h.version = ReadLe<uint16_t>(image, kVersion);
  if (h.version < kMinBootProtocol) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "Linux boot protocol %d.%02d is too old: at least %d.%02d is needed (kernels since 3.8)", h.version >> 8,
        h.version & 0xff, kMinBootProtocol >> 8, kMinBootProtocol & 0xff));
  }
  if (image.size() < kHeader212End) {
    return absl::InvalidArgumentError(
        absl::StrFormat("kernel image truncated: %u bytes, the protocol 2.12 setup header ends at %#x",
                        image.size(), kHeader212End));
  }
  h.header_end = 0x202 + image[kJumpOffset];
  h.loadflags = image[kLoadflags];
  h.xloadflags = ReadLe<uint16_t>(image, kXloadflags);
  h.relocatable = image[kRelocatable] != 0;
  h.kernel_alignment = ReadLe<uint32_t>(image, kKernelAlignment);
  h.initrd_addr_max = ReadLe<uint32_t>(image, kInitrdAddrMax);
  h.cmdline_size = ReadLe<uint32_t>(image, kCmdlineSize);
  h.pref_address = ReadLe<uint64_t>(image, kPrefAddress);
  h.init_size = ReadLe<uint32_t>(image, kInitSize);
  h.payload_offset = ReadLe<uint32_t>(image, kPayloadOffset);
  h.payload_length = ReadLe<uint32_t>(image, kPayloadLength);
  if ((h.loadflags & LOADED_HIGH) == 0) {
    return absl::InvalidArgumentError("not a bzImage: a zImage (loaded at 0x10000) is not supported");
  }
  if ((h.xloadflags & XLF_KERNEL_64) == 0) {
    return absl::FailedPreconditionError("this kernel has no 64-bit entry point (xloadflags lacks XLF_KERNEL_64)");
  }
  uint32_t setup_sects = image[kSetupSects];
  if (setup_sects == 0) setup_sects = 4;  // boot.rst: 0 means 4
  h.kernel_offset = (static_cast<size_t>(setup_sects) + 1) * 512;
  const uint64_t syssize_bytes = static_cast<uint64_t>(ReadLe<uint32_t>(image, kSyssize)) * 16;
  if (image.size() < h.kernel_offset || image.size() - h.kernel_offset < syssize_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kernel image truncated: %u bytes, its header announces %u bytes of setup and %u of kernel", image.size(),
        h.kernel_offset, syssize_bytes));
  }
  h.kernel_size = image.size() - h.kernel_offset;
  if (h.header_end < kHeader212End || h.header_end > h.kernel_offset) {
    return absl::InvalidArgumentError(
        absl::StrFormat("malformed setup header: it ends at %#x (setup code is %#x bytes)", h.header_end,
                        h.kernel_offset));
  }
  if (h.init_size < h.kernel_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "malformed setup header: init_size %#x is smaller than the kernel (%#x bytes)", h.init_size, h.kernel_size));
  }
  return h;
}

}  // namespace coalesce
