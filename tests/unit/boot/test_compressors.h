// Compressors for the decompression tests, built on the same libraries as hypervisor/boot/kernel_payload.cc,
// producing streams the way the kernel's build does (lz4 -l legacy frames, gzip, xz with CRC32, zstd), and a
// small x86-64 "vmlinux" ELF for the loader tests.
#pragma once

#include <elf.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "hypervisor/boot/kernel_payload.h"

namespace coalesce::testing {

inline void AppendLe32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// Compressible but not trivial: runs of a counter mixed with a linear congruential sequence.
inline std::vector<uint8_t> TestData(size_t size, uint32_t seed = 1) {
  std::vector<uint8_t> d(size);
  uint32_t x = seed;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1664525u + 1013904223u;
    d[i] = (i / 64) % 3 == 0 ? static_cast<uint8_t>(x >> 24) : static_cast<uint8_t>(i / 4096);
  }
  return d;
}

// lz4 legacy: magic, then [le32 size][block] per 8 MiB of input. new_frame_per_block repeats the magic between
// blocks, as concatenated lz4 -l files would.
inline std::vector<uint8_t> Lz4LegacyCompress(const std::vector<uint8_t>& in, bool new_frame_per_block = false) {
  constexpr size_t kBlock = 8u << 20;
  std::vector<uint8_t> out;
  AppendLe32(out, 0x184C2102);
  std::vector<char> tmp(static_cast<size_t>(LZ4_compressBound(static_cast<int>(kBlock))));
  for (size_t pos = 0; pos < in.size(); pos += kBlock) {
    if (new_frame_per_block && pos != 0) AppendLe32(out, 0x184C2102);
    const size_t n = std::min(kBlock, in.size() - pos);
    const int c = LZ4_compress_default(reinterpret_cast<const char*>(in.data() + pos), tmp.data(),
                                       static_cast<int>(n), static_cast<int>(tmp.size()));
    if (c <= 0) throw std::runtime_error("LZ4_compress_default failed");
    AppendLe32(out, static_cast<uint32_t>(c));
    out.insert(out.end(), tmp.begin(), tmp.begin() + c);
  }
  return out;
}

inline std::vector<uint8_t> GzipCompress(const std::vector<uint8_t>& in) {
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("deflateInit2 failed");
  }
  std::vector<uint8_t> out(deflateBound(&zs, in.size()) + 64);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  return out;
}

inline std::vector<uint8_t> XzCompress(const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out(lzma_stream_buffer_bound(in.size()));
  size_t pos = 0;
  if (lzma_easy_buffer_encode(1, LZMA_CHECK_CRC32, nullptr, in.data(), in.size(), out.data(), &pos, out.size()) !=
      LZMA_OK) {
    throw std::runtime_error("lzma_easy_buffer_encode failed");
  }
  out.resize(pos);
  return out;
}

// With a content checksum, as the zstd command line (and so the kernel's build) writes by default.
inline std::vector<uint8_t> ZstdCompress(const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out(ZSTD_compressBound(in.size()));
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  const size_t n = ZSTD_compress2(cctx, out.data(), out.size(), in.data(), in.size());
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(n)) throw std::runtime_error("ZSTD_compress2 failed");
  out.resize(n);
  return out;
}

inline std::vector<uint8_t> CompressWith(PayloadCompression c, const std::vector<uint8_t>& in) {
  switch (c) {
    case PayloadCompression::kGzip: return GzipCompress(in);
    case PayloadCompression::kXz: return XzCompress(in);
    case PayloadCompression::kLz4Legacy: return Lz4LegacyCompress(in);
    case PayloadCompression::kZstd: return ZstdCompress(in);
    default: break;
  }
  throw std::runtime_error("no compressor for this format");
}

// What the kernel's build puts in a bzImage: the stream, then (except for gzip, whose trailer already ends
// with it) the uncompressed size as le32.
inline std::vector<uint8_t> KernelStylePayload(PayloadCompression c, const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out = CompressWith(c, in);
  if (c != PayloadCompression::kGzip) AppendLe32(out, static_cast<uint32_t>(in.size()));
  return out;
}

// A small x86-64 kernel-shaped ELF: text linked at 0xffffffff81000000 / physical 0x1000000 (entry there,
// e_entry physical like vmlinux's phys_startup_64), a per-CPU-like segment linked at virtual 0, and a data
// segment whose bss part (memsz > filesz) must be zeroed.
struct FakeVmlinux {
  uint64_t text_paddr = 0x1000000;
  uint64_t entry = 0x1000000;
  uint64_t text_size = 0x3000;
  uint64_t data_paddr = 0x1400000;
  uint64_t data_filesz = 0x1800;
  uint64_t data_memsz = 0x5000;
  uint64_t percpu_paddr = 0x1200000;
  uint64_t percpu_size = 0x2000;
  uint8_t elf_class = ELFCLASS64;

  [[nodiscard]] std::vector<uint8_t> Build() const {
    constexpr size_t kPh = 3;
    const size_t text_off = 0x1000;
    const size_t percpu_off = text_off + text_size;
    const size_t data_off = percpu_off + percpu_size;
    std::vector<uint8_t> b(data_off + data_filesz);
    for (size_t i = text_off; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 13 + 5);
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = elf_class;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = kPh;
    std::memcpy(b.data(), &eh, sizeof(eh));
    const Elf64_Phdr ph[kPh] = {
        {PT_LOAD, PF_R | PF_X, text_off, 0xffffffff80000000ULL + text_paddr, text_paddr, text_size, text_size,
         0x200000},
        {PT_LOAD, PF_R | PF_W, percpu_off, 0, percpu_paddr, percpu_size, percpu_size, 0x1000},
        {PT_LOAD, PF_R | PF_W, data_off, 0xffffffff80000000ULL + data_paddr, data_paddr, data_filesz, data_memsz,
         0x1000},
    };
    std::memcpy(b.data() + sizeof(eh), ph, sizeof(ph));
    return b;
  }
};

}  // namespace coalesce::testing
