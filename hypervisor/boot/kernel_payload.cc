#include "hypervisor/boot/kernel_payload.h"

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/boot/bzimage_header.h"

namespace coalesce {
namespace {

// lz4 legacy format ("lz4 -l", what the kernel's build uses): a 4-byte magic, then blocks of
// [le32 compressed size][compressed bytes], each decompressing to at most 8 MiB. The magic may appear again
// in place of a block size, starting a new frame (concatenated files).
constexpr uint32_t kLz4LegacyMagic = 0x184C2102;
constexpr uint64_t kLz4LegacyBlockMax = 8ULL << 20;
constexpr size_t kSizeWordBytes = 4;
// zstd accepts window logs up to 31 on 64-bit hosts; the kernel's "zstd -22 --ultra" uses 27, which is also
// libzstd's default limit, so raising the limit only matters for hand-built images.
constexpr int kZstdWindowLogMax = 31;

uint32_t ReadLe32(std::span<const uint8_t> b, size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, sizeof(v));
  return v;
}

bool StartsWith(std::span<const uint8_t> data, std::initializer_list<uint8_t> magic) {
  return data.size() >= magic.size() && std::equal(magic.begin(), magic.end(), data.begin());
}

absl::Status CheckOutputSize(PayloadCompression c, uint64_t produced, uint64_t expected) {
  if (produced > expected) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s payload decompresses to more than its recorded size of %u bytes", PayloadCompressionName(c), expected));
  }
  if (produced < expected) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s payload decompresses to %u bytes, its recorded size is %u (truncated?)", PayloadCompressionName(c),
        produced, expected));
  }
  return absl::OkStatus();
}

absl::Status TrailingBytes(PayloadCompression c, size_t left) {
  if (left == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat("%s payload: %u bytes follow the end of the compressed stream",
                                                    PayloadCompressionName(c), left));
}

// The decoders below write into a buffer one byte larger than expected, so that a stream producing more
// than its recorded size is told apart from one producing exactly that much.

absl::StatusOr<std::vector<uint8_t>> InflateGzip(std::span<const uint8_t> in, uint64_t expected) {
  if (in.size() > std::numeric_limits<uInt>::max() || expected >= std::numeric_limits<uInt>::max()) {
    return absl::InvalidArgumentError("gzip payload too large for zlib's 32-bit counters");
  }
  std::vector<uint8_t> out(expected + 1);
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return absl::InternalError("zlib: inflateInit2 failed");
  zs.next_in = const_cast<Bytef*>(in.data());  // zlib's API is not const-correct; it does not write the input
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_FINISH);
  const uint64_t produced = zs.total_out;
  const size_t left = zs.avail_in;
  const std::string msg = zs.msg ? zs.msg : "";
  inflateEnd(&zs);
  if (rc == Z_STREAM_END) {
    RETURN_IF_ERROR(CheckOutputSize(PayloadCompression::kGzip, produced, expected));
    RETURN_IF_ERROR(TrailingBytes(PayloadCompression::kGzip, left));
    out.resize(expected);
    return out;
  }
  if (rc == Z_BUF_ERROR || rc == Z_OK) {
    // No room left (more output than recorded) or no input left (the stream stops early).
    if (produced > expected) return CheckOutputSize(PayloadCompression::kGzip, produced, expected);
    return absl::InvalidArgumentError(
        absl::StrFormat("gzip payload truncated: the stream ends early after %u bytes of output", produced));
  }
  return absl::InvalidArgumentError(absl::StrFormat("gzip payload corrupt: %s (zlib error %d)", msg, rc));
}

absl::StatusOr<std::vector<uint8_t>> DecodeXz(std::span<const uint8_t> in, uint64_t expected) {
  std::vector<uint8_t> out(expected + 1);
  lzma_stream s = LZMA_STREAM_INIT;
  // No LZMA_CONCATENATED: the stream's end is where decoding stops, so leftover bytes can be reported.
  if (lzma_stream_decoder(&s, UINT64_MAX, 0) != LZMA_OK) return absl::InternalError("liblzma: decoder init failed");
  s.next_in = in.data();
  s.avail_in = in.size();
  s.next_out = out.data();
  s.avail_out = out.size();
  // lzma_code() reports LZMA_BUF_ERROR only on the second call in a row without progress.
  lzma_ret rc = LZMA_OK;
  do {
    rc = lzma_code(&s, LZMA_FINISH);
  } while (rc == LZMA_OK && s.avail_out > 0);
  const uint64_t produced = s.total_out;
  const size_t left = s.avail_in;
  lzma_end(&s);
  if (rc == LZMA_STREAM_END) {
    RETURN_IF_ERROR(CheckOutputSize(PayloadCompression::kXz, produced, expected));
    RETURN_IF_ERROR(TrailingBytes(PayloadCompression::kXz, left));
    out.resize(expected);
    return out;
  }
  if (rc == LZMA_BUF_ERROR || rc == LZMA_OK) {
    if (produced > expected) return CheckOutputSize(PayloadCompression::kXz, produced, expected);
    return absl::InvalidArgumentError(
        absl::StrFormat("xz payload truncated: the stream ends early after %u bytes of output", produced));
  }
  return absl::InvalidArgumentError(absl::StrFormat("xz payload corrupt (liblzma error %d)", static_cast<int>(rc)));
}

absl::StatusOr<std::vector<uint8_t>> DecodeZstd(std::span<const uint8_t> in, uint64_t expected) {
  std::vector<uint8_t> out(expected + 1);
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return absl::InternalError("libzstd: ZSTD_createDCtx failed");
  const size_t set = ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, kZstdWindowLogMax);
  if (ZSTD_isError(set)) return absl::InternalError(std::string("libzstd: ") + ZSTD_getErrorName(set));
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  // Several frames may follow each other: decode until the input is used up and the last frame is complete.
  for (;;) {
    const size_t in_before = ib.pos;
    const size_t out_before = ob.pos;
    const size_t rc = ZSTD_decompressStream(dctx.get(), &ob, &ib);
    if (ZSTD_isError(rc)) {
      return absl::InvalidArgumentError(absl::StrFormat("zstd payload corrupt: %s", ZSTD_getErrorName(rc)));
    }
    if (ob.pos == ob.size) return CheckOutputSize(PayloadCompression::kZstd, ob.pos, expected);
    if (rc == 0 && ib.pos == ib.size) break;
    if (ib.pos == in_before && ob.pos == out_before) {
      return absl::InvalidArgumentError(
          absl::StrFormat("zstd payload truncated: the stream ends early after %u bytes of output", ob.pos));
    }
  }
  RETURN_IF_ERROR(CheckOutputSize(PayloadCompression::kZstd, ob.pos, expected));
  out.resize(expected);
  return out;
}

absl::StatusOr<std::vector<uint8_t>> DecodeLz4Legacy(std::span<const uint8_t> in, uint64_t expected) {
  constexpr PayloadCompression kFmt = PayloadCompression::kLz4Legacy;
  if (in.size() < kSizeWordBytes || ReadLe32(in, 0) != kLz4LegacyMagic) {
    return absl::InvalidArgumentError("lz4 payload does not start with the legacy frame magic 0x184C2102");
  }
  std::vector<uint8_t> out(expected);
  const auto max_block = static_cast<uint64_t>(LZ4_compressBound(static_cast<int>(kLz4LegacyBlockMax)));
  uint64_t produced = 0;
  size_t pos = kSizeWordBytes;
  while (pos < in.size()) {
    if (in.size() - pos < kSizeWordBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("lz4 payload truncated: %u stray bytes where a block size belongs", in.size() - pos));
    }
    const uint32_t block = ReadLe32(in, pos);
    pos += kSizeWordBytes;
    if (block == kLz4LegacyMagic) continue;  // a concatenated frame begins
    if (block == 0 || block > max_block) {
      return absl::InvalidArgumentError(
          absl::StrFormat("lz4 payload corrupt: block at offset %u claims %u compressed bytes", pos - 4, block));
    }
    if (block > in.size() - pos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "lz4 payload truncated: block at offset %u needs %u bytes, %u remain", pos - 4, block, in.size() - pos));
    }
    const uint64_t room = std::min(kLz4LegacyBlockMax, expected - produced);
    if (room == 0) return CheckOutputSize(kFmt, expected + 1, expected);
    const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(in.data() + pos),
                                      reinterpret_cast<char*>(out.data() + produced), static_cast<int>(block),
                                      static_cast<int>(room));
    if (n < 0) {
      // liblz4 does not say whether the block was malformed or wanted more room than the recorded size left.
      return absl::InvalidArgumentError(absl::StrFormat(
          "lz4 payload corrupt: block at offset %u does not decompress into the %u bytes left of the recorded "
          "size",
          pos - 4, room));
    }
    produced += static_cast<uint64_t>(n);
    pos += block;
  }
  RETURN_IF_ERROR(CheckOutputSize(kFmt, produced, expected));
  return out;
}

}  // namespace

const char* PayloadCompressionName(PayloadCompression c) {
  switch (c) {
    case PayloadCompression::kGzip: return "gzip";
    case PayloadCompression::kXz: return "xz";
    case PayloadCompression::kLz4Legacy: return "lz4 (legacy frame)";
    case PayloadCompression::kZstd: return "zstd";
    case PayloadCompression::kBzip2: return "bzip2";
    case PayloadCompression::kLzma: return "lzma";
    case PayloadCompression::kLzo: return "lzo";
    case PayloadCompression::kUnknown: break;
  }
  return "unknown";
}

PayloadCompression DetectCompression(std::span<const uint8_t> data) {
  if (StartsWith(data, {0x1f, 0x8b})) return PayloadCompression::kGzip;
  if (StartsWith(data, {0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00})) return PayloadCompression::kXz;
  if (StartsWith(data, {0x02, 0x21, 0x4c, 0x18})) return PayloadCompression::kLz4Legacy;
  if (StartsWith(data, {0x28, 0xb5, 0x2f, 0xfd})) return PayloadCompression::kZstd;
  if (StartsWith(data, {'B', 'Z', 'h'})) return PayloadCompression::kBzip2;
  if (StartsWith(data, {0x89, 'L', 'Z', 'O'})) return PayloadCompression::kLzo;
  if (StartsWith(data, {0x5d, 0x00})) return PayloadCompression::kLzma;
  return PayloadCompression::kUnknown;
}

bool CanDecompress(PayloadCompression c) {
  return c == PayloadCompression::kGzip || c == PayloadCompression::kXz || c == PayloadCompression::kLz4Legacy ||
         c == PayloadCompression::kZstd;
}

absl::StatusOr<std::vector<uint8_t>> Decompress(PayloadCompression c, std::span<const uint8_t> data,
                                                uint64_t expected_size) {
  if (!CanDecompress(c)) {
    return absl::UnimplementedError(absl::StrFormat(
        "kernel payload compressed with %s: Coalesce decompresses only gzip, xz, lz4 and zstd on the host",
        PayloadCompressionName(c)));
  }
  if (expected_size > kMaxDecompressedKernel) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "kernel payload claims %u bytes uncompressed, more than the %u accepted", expected_size,
        kMaxDecompressedKernel));
  }
  switch (c) {
    case PayloadCompression::kGzip: return InflateGzip(data, expected_size);
    case PayloadCompression::kXz: return DecodeXz(data, expected_size);
    case PayloadCompression::kLz4Legacy: return DecodeLz4Legacy(data, expected_size);
    case PayloadCompression::kZstd: return DecodeZstd(data, expected_size);
    default: break;
  }
  return absl::InternalError("unreachable");
}

absl::StatusOr<KernelPayload> ExtractKernelPayload(std::span<const uint8_t> bzimage) {
  ASSIGN_OR_RETURN(BzImageHeader h, ParseBzImageHeader(bzimage));
  if (h.payload_length <= kSizeWordBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bzImage payload_length is %u: no compressed kernel with its size word", h.payload_length));
  }
  if (h.payload_offset > h.kernel_size || h.payload_length > h.kernel_size - h.payload_offset) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bzImage payload [%#x, +%#x) lies outside the %#x bytes of protected-mode code", h.payload_offset,
        h.payload_length, h.kernel_size));
  }
  const auto payload = bzimage.subspan(h.kernel_offset + h.payload_offset, h.payload_length);
  KernelPayload p;
  p.compression = DetectCompression(payload);
  p.uncompressed_size = ReadLe32(payload, payload.size() - kSizeWordBytes);
  // gzip's trailer ends with ISIZE, which is the size word; every other format has it appended.
  p.stream = p.compression == PayloadCompression::kGzip ? payload : payload.first(payload.size() - kSizeWordBytes);
  return p;
}

absl::StatusOr<std::vector<uint8_t>> DecompressKernelPayload(std::span<const uint8_t> bzimage) {
  ASSIGN_OR_RETURN(KernelPayload p, ExtractKernelPayload(bzimage));
  return Decompress(p.compression, p.stream, p.uncompressed_size);
}

}  // namespace coalesce
