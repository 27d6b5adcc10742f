#include "hypervisor/boot/kernel_payload.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "hypervisor/boot/kernel_image.h"
#include "tests/unit/boot/fake_bzimage.h"
#include "tests/unit/boot/test_compressors.h"

namespace coalesce {
namespace {

using testing::KernelStylePayload;
using testing::TestData;

constexpr uint64_t kMiB = 1ULL << 20;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST_CASE("payload format detection by magic") {
  using P = PayloadCompression;
  CHECK(DetectCompression(std::vector<uint8_t>{0x02, 0x21, 0x4c, 0x18, 0}) == P::kLz4Legacy);
  CHECK(DetectCompression(std::vector<uint8_t>{0x1f, 0x8b, 8}) == P::kGzip);
  CHECK(DetectCompression(std::vector<uint8_t>{0xfd, '7', 'z', 'X', 'Z', 0}) == P::kXz);
  CHECK(DetectCompression(std::vector<uint8_t>{0x28, 0xb5, 0x2f, 0xfd}) == P::kZstd);
  CHECK(DetectCompression(std::vector<uint8_t>{'B', 'Z', 'h', '9'}) == P::kBzip2);
  CHECK(DetectCompression(std::vector<uint8_t>{0x89, 'L', 'Z', 'O'}) == P::kLzo);
  CHECK(DetectCompression(std::vector<uint8_t>{0x5d, 0x00, 0x00}) == P::kLzma);
  CHECK(DetectCompression(std::vector<uint8_t>{0x7f, 'E', 'L', 'F'}) == P::kUnknown);
  CHECK(DetectCompression(std::vector<uint8_t>{0x02, 0x21}) == P::kUnknown);  // too short for lz4's magic
  CHECK(DetectCompression({}) == P::kUnknown);
  CHECK_FALSE(CanDecompress(P::kBzip2));
  CHECK(CanDecompress(P::kLz4Legacy));
}

TEST_CASE("each supported format round-trips through Decompress") {
  using P = PayloadCompression;
  const P format = GENERATE(P::kGzip, P::kXz, P::kLz4Legacy, P::kZstd);
  // lz4 gets more than two 8 MiB legacy blocks; the slower encoders a smaller input.
  const size_t size = format == P::kLz4Legacy ? 17 * kMiB + 4321 : kMiB + 777;
  INFO(PayloadCompressionName(format));
  const auto data = TestData(size);
  const auto stream = testing::CompressWith(format, data);
  REQUIRE(DetectCompression(stream) == format);
  auto out = Decompress(format, stream, data.size());
  REQUIRE(out.ok());
  CHECK(*out == data);

  SECTION("an output size other than the recorded one is refused") {
    auto small = Decompress(format, stream, data.size() - 1);
    CHECK(small.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(Message(small.status()), Catch::Contains("recorded size"));
    auto big = Decompress(format, stream, data.size() + 1);
    CHECK(big.status().code() == absl::StatusCode::kInvalidArgument);
  }
  SECTION("a truncated stream is refused") {
    const std::vector<uint8_t> cut(stream.begin(), stream.begin() + static_cast<long>(stream.size() * 2 / 3));
    auto r = Decompress(format, cut, data.size());
    CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  }
  SECTION("a corrupt stream is refused") {
    auto bad = stream;
    if (format == P::kLz4Legacy) {
      // Legacy lz4 has no checksum: break its structure (the first block's size, one byte short).
      bad[4] = static_cast<uint8_t>(bad[4] - 1);
    } else {
      // gzip and xz carry a CRC32, the kernel's zstd a content checksum: garble the middle of the data.
      for (size_t i = bad.size() / 2; i < bad.size() / 2 + 64; ++i) bad[i] ^= 0x5a;
    }
    auto r = Decompress(format, bad, data.size());
    CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  }
  SECTION("garbage after the stream is refused") {
    auto tail = stream;
    tail.insert(tail.end(), {1, 2, 3, 4, 5, 6, 7, 8});
    auto r = Decompress(format, tail, data.size());
    CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  }
  SECTION("an empty stream is refused") {
    auto r = Decompress(format, {}, data.size());
    CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("lz4 legacy: a repeated magic starts a new frame") {
  const auto data = TestData(9 * kMiB, 7);
  const auto stream = testing::Lz4LegacyCompress(data, /*new_frame_per_block=*/true);
  auto out = Decompress(PayloadCompression::kLz4Legacy, stream, data.size());
  REQUIRE(out.ok());
  CHECK(*out == data);
}

TEST_CASE("lz4 legacy: malformed block sizes") {
  const auto data = TestData(64 * 1024);
  auto stream = testing::Lz4LegacyCompress(data);
  SECTION("a block size beyond the end") {
    stream[4] = 0xff;
    stream[5] = 0xff;
    stream[6] = 0x0f;
    auto r = Decompress(PayloadCompression::kLz4Legacy, stream, data.size());
    CHECK_THAT(Message(r.status()), Catch::Contains("lz4 payload"));
  }
  SECTION("stray bytes where a block size belongs") {
    stream.insert(stream.end(), {1, 2});
    auto r = Decompress(PayloadCompression::kLz4Legacy, stream, data.size());
    CHECK_THAT(Message(r.status()), Catch::Contains("stray bytes"));
  }
  SECTION("a zero block size") {
    testing::AppendLe32(stream, 0);
    auto r = Decompress(PayloadCompression::kLz4Legacy, stream, data.size());
    CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("formats not decompressed here and oversized claims") {
  const std::vector<uint8_t> bz = {'B', 'Z', 'h', '9', 1, 2, 3};
  auto r = Decompress(PayloadCompression::kBzip2, bz, 100);
  CHECK(r.status().code() == absl::StatusCode::kUnimplemented);
  CHECK_THAT(Message(r.status()), Catch::Contains("bzip2"));
  auto u = Decompress(PayloadCompression::kUnknown, bz, 100);
  CHECK(u.status().code() == absl::StatusCode::kUnimplemented);
  CHECK_THAT(Message(u.status()), Catch::Contains("unknown"));
  const auto stream = testing::ZstdCompress(TestData(1000));
  auto huge = Decompress(PayloadCompression::kZstd, stream, kMaxDecompressedKernel + 1);
  CHECK(huge.status().code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("payload extraction from a bzImage") {
  using P = PayloadCompression;
  const auto data = TestData(200 * 1024, 3);
  SECTION("lz4: the size word is split off the stream") {
    testing::FakeBzImage k;
    k.compressed = KernelStylePayload(P::kLz4Legacy, data);
    const auto img = k.Build();
    auto p = ExtractKernelPayload(img);
    REQUIRE(p.ok());
    CHECK(p->compression == P::kLz4Legacy);
    CHECK(p->uncompressed_size == data.size());
    CHECK(p->stream.size() == k.compressed.size() - 4);
    CHECK(p->stream.data() == img.data() + 5 * 512 + k.payload_offset);
    auto v = DecompressKernelPayload(img);
    REQUIRE(v.ok());
    CHECK(*v == data);
  }
  SECTION("gzip: the size word is the stream's own ISIZE") {
    testing::FakeBzImage k;
    k.compressed = KernelStylePayload(P::kGzip, data);
    const auto img = k.Build();
    auto p = ExtractKernelPayload(img);
    REQUIRE(p.ok());
    CHECK(p->stream.size() == k.compressed.size());
    CHECK(p->uncompressed_size == data.size());
    auto v = DecompressKernelPayload(img);
    REQUIRE(v.ok());
    CHECK(*v == data);
  }
  SECTION("xz and zstd") {
    for (P f : {P::kXz, P::kZstd}) {
      testing::FakeBzImage k;
      k.compressed = KernelStylePayload(f, data);
      auto v = DecompressKernelPayload(k.Build());
      REQUIRE(v.ok());
      CHECK(*v == data);
    }
  }
  SECTION("a wrong size word is caught") {
    testing::FakeBzImage k;
    k.compressed = KernelStylePayload(P::kZstd, data);
    k.compressed[k.compressed.size() - 2] ^= 0x01;  // the size word's third byte: 64 KiB more
    auto v = DecompressKernelPayload(k.Build());
    CHECK(v.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(Message(v.status()), Catch::Contains("recorded size"));
    k.compressed.back() = 0x7f;  // 2 GiB: more than any kernel
    CHECK(DecompressKernelPayload(k.Build()).status().code() == absl::StatusCode::kResourceExhausted);
  }
  SECTION("payload outside the file") {
    testing::FakeBzImage k;
    k.compressed = KernelStylePayload(P::kLz4Legacy, data);
    auto img = k.Build();
    const uint32_t too_long = static_cast<uint32_t>(img.size());
    std::memcpy(&img[0x24c], &too_long, 4);
    auto p = ExtractKernelPayload(img);
    CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(Message(p.status()), Catch::Contains("outside"));
  }
  SECTION("no payload recorded") {
    auto p = ExtractKernelPayload(testing::FakeBzImage{}.Build());
    CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
  }
  SECTION("unknown payload format: detected as such, Decompress says so") {
    testing::FakeBzImage k;
    k.compressed = std::vector<uint8_t>(4096, 0x42);
    auto p = ExtractKernelPayload(k.Build());
    REQUIRE(p.ok());
    CHECK(p->compression == P::kUnknown);
    auto v = DecompressKernelPayload(k.Build());
    CHECK(v.status().code() == absl::StatusCode::kUnimplemented);
  }
}

// The real Debian cloud kernel (scripts/guest-assets.sh): lz4 legacy, decompressing to an x86-64 ELF.
TEST_CASE("Debian cloud kernel: payload decompresses to vmlinux") {
  const char* dir = std::getenv("COALESCE_GUEST_ASSETS");
  const std::string kernel = std::string(dir ? dir : "guest-assets") + "/vmlinuz";
  if (!std::filesystem::exists(kernel)) {
    WARN("no " << kernel << ": the real-kernel checks did not run (run scripts/guest-assets.sh)");
    return;
  }
  auto img = ReadFileBytes(kernel);
  REQUIRE(img.ok());
  auto p = ExtractKernelPayload(*img);
  REQUIRE(p.ok());
  INFO("payload format " << PayloadCompressionName(p->compression));
  CHECK(CanDecompress(p->compression));
  auto v = DecompressKernelPayload(*img);
  REQUIRE(v.ok());
  CHECK(v->size() == p->uncompressed_size);
  REQUIRE(v->size() > 64);
  CHECK(std::memcmp(v->data(), ELFMAG, SELFMAG) == 0);
  CHECK((*v)[EI_CLASS] == ELFCLASS64);
}

}  // namespace
}  // namespace coalesce
