// The compressed kernel inside a bzImage, and its decompression on the host.
//
// A bzImage's protected-mode code is the kernel's decompressor followed by the payload: the real kernel
// (vmlinux, an ELF file, plus its relocation table) compressed with one of gzip, bzip2, lzma, xz, lzo, lz4 or
// zstd. The setup header locates it (payload_offset, from the start of the protected-mode code, and
// payload_length). The kernel's build appends the uncompressed size as a little-endian 32-bit word to every
// format but gzip, whose own trailer already ends with it (ISIZE); either way the payload's last four bytes
// are the uncompressed size, which the decompressor and mkpiggy read from there.
//
// Decompressing on the host lets the loader enter the kernel proper directly (vmlinux_loader.h) instead of
// running the decompressor inside the guest, which under a software virtualizer takes minutes.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace coalesce {

enum class PayloadCompression {
  kUnknown,
  kGzip,       // 1f 8b (RFC 1952), via zlib
  kXz,         // fd 37 7a 58 5a 00, via liblzma
  kLz4Legacy,  // 02 21 4c 18: lz4 -l legacy frames, via liblz4
  kZstd,       // 28 b5 2f fd, via libzstd
  kBzip2,      // "BZh": recognised, not decompressed here
  kLzma,       // 5d 00 (lzma_alone): recognised, not decompressed here
  kLzo,        // 89 "LZO": recognised, not decompressed here
};

const char* PayloadCompressionName(PayloadCompression c);

// Which format `data` starts with, by its magic bytes.
PayloadCompression DetectCompression(std::span<const uint8_t> data);

// True for the formats Decompress() handles.
bool CanDecompress(PayloadCompression c);

// The largest decompressed kernel accepted (a vmlinux is tens of MiB; this bounds a hostile size field).
inline constexpr uint64_t kMaxDecompressedKernel = 1ULL << 30;

// Decompresses one complete stream of format `c` that must produce exactly `expected_size` bytes.
// `data` is the compressed stream alone, without the kernel's appended size word (for gzip the stream's own
// trailer is part of `data`). Errors: Unimplemented for a format not handled here (kUnknown included);
// InvalidArgument for corrupt or truncated data, bytes left over after the stream, or an output size other
// than `expected_size`; ResourceExhausted when `expected_size` exceeds kMaxDecompressedKernel.
absl::StatusOr<std::vector<uint8_t>> Decompress(PayloadCompression c, std::span<const uint8_t> data,
                                                uint64_t expected_size);

struct KernelPayload {
  PayloadCompression compression = PayloadCompression::kUnknown;
  std::span<const uint8_t> stream;  // what Decompress() takes: the payload less the appended size word
  uint32_t uncompressed_size = 0;   // the payload's last four bytes
};

// Locates the payload of a bzImage (whose header ParseBzImageHeader() accepts) and detects its format.
// Errors (InvalidArgument): payload_offset/payload_length missing (protocol < 2.08), zero, or outside the
// file; a payload too short to hold its size word. An unrecognised format is not an error: compression is
// kUnknown.
absl::StatusOr<KernelPayload> ExtractKernelPayload(std::span<const uint8_t> bzimage);

// ExtractKernelPayload() then Decompress(): the vmlinux ELF image (followed by the relocation table the
// kernel's build appends, which the ELF loader ignores).
absl::StatusOr<std::vector<uint8_t>> DecompressKernelPayload(std::span<const uint8_t> bzimage);

}  // namespace coalesce
