#include "devmodel/fw_cfg.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/unit/devmodel/recording_irq_sink.h"

namespace coalesce {
namespace {

// What a guest does: a 16-bit out to 0x510, then byte-wide ins from 0x511.
std::vector<uint8_t> ReadItem(FwCfg& dev, uint16_t key, size_t length) {
  Outw(dev, 0, key);
  std::vector<uint8_t> bytes(length);
  for (auto& b : bytes) b = Inb(dev, 1);
  return bytes;
}

uint64_t Le(const std::vector<uint8_t>& b) {
  uint64_t v = 0;
  for (size_t i = 0; i < b.size(); ++i) v |= static_cast<uint64_t>(b[i]) << (8 * i);
  return v;
}

uint64_t Be(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

struct DirEntry {
  uint32_t size;
  uint16_t select;
  std::string name;
};

// Parses FW_CFG_FILE_DIR the way firmware does: a big-endian count, then 64-byte entries.
std::vector<DirEntry> ReadDirectory(FwCfg& dev) {
  const uint64_t count = Be(ReadItem(dev, FwCfg::kFileDirKey, 4).data(), 4);
  std::vector<DirEntry> entries;
  for (uint64_t i = 0; i < count; ++i) {
    std::vector<uint8_t> e(64);
    for (auto& b : e) b = Inb(dev, 1);  // the cursor continues through the item
    DirEntry d;
    d.size = static_cast<uint32_t>(Be(e.data(), 4));
    d.select = static_cast<uint16_t>(Be(e.data() + 4, 2));
    CHECK(Be(e.data() + 6, 2) == 0);
    d.name = std::string(reinterpret_cast<const char*>(e.data() + 8));
    CHECK(d.name.size() < 56);
    entries.push_back(d);
  }
  return entries;
}

TEST_CASE("fw_cfg: signature, interface ID, CPU counts and RAM size") {
  FwCfg dev;
  auto sig = ReadItem(dev, FwCfg::kSignatureKey, 4);
  CHECK(std::string(sig.begin(), sig.end()) == "QEMU");
  CHECK(Le(ReadItem(dev, FwCfg::kIdKey, 4)) == 1);  // traditional interface, no DMA
  dev.SetCpuCount(4, 8);
  dev.SetRamSize(0x1'2345'6000ULL);
  CHECK(Le(ReadItem(dev, FwCfg::kNbCpusKey, 2)) == 4);
  CHECK(Le(ReadItem(dev, FwCfg::kMaxCpusKey, 2)) == 8);
  CHECK(Le(ReadItem(dev, FwCfg::kRamSizeKey, 8)) == 0x1'2345'6000ULL);
}

TEST_CASE("fw_cfg: reads past the end, absent items and data writes give zeros and are harmless") {
  FwCfg dev;
  auto sig = ReadItem(dev, FwCfg::kSignatureKey, 6);
  CHECK(sig[4] == 0);
  CHECK(sig[5] == 0);
  CHECK(Le(ReadItem(dev, 0x1234, 4)) == 0);
  Outb(dev, 1, 0x55);  // data write: ignored
  Outb(dev, 0, 0x01);  // a byte-wide write is a data write too, as on QEMU
  CHECK(Le(ReadItem(dev, FwCfg::kSignatureKey, 1)) == 'Q');
  // Re-selecting rewinds the cursor.
  Outw(dev, 0, FwCfg::kSignatureKey);
  CHECK(Inb(dev, 1) == 'Q');
  CHECK(Inb(dev, 1) == 'E');
  Outw(dev, 0, FwCfg::kSignatureKey);
  CHECK(Inb(dev, 1) == 'Q');
}

TEST_CASE("fw_cfg: file directory lists files sorted by name with big-endian fields") {
  FwCfg dev;
  CHECK(ReadDirectory(dev).empty());
  auto a = dev.AddFile("opt/zeta", {1, 2, 3});
  REQUIRE(a.ok());
  const std::vector<FwCfg::E820Entry> map = {{0, 0x9fc00, 1}, {0x100000, 0x7ff00000, 1}, {0xfec00000, 0x1000, 2}};
  auto e820 = dev.AddE820(map);
  REQUIRE(e820.ok());
  CHECK(*a >= FwCfg::kFirstFileKey);
  CHECK(*e820 != *a);

  auto dir = ReadDirectory(dev);
  REQUIRE(dir.size() == 2);
  CHECK(dir[0].name == "etc/e820");
  CHECK(dir[0].size == 60);
  CHECK(dir[0].select == *e820);
  CHECK(dir[1].name == "opt/zeta");
  CHECK(dir[1].size == 3);
  CHECK(ReadItem(dev, dir[1].select, 3) == std::vector<uint8_t>{1, 2, 3});

  // Parse the e820 file as firmware does: 20-byte little-endian records.
  auto raw = ReadItem(dev, dir[0].select, dir[0].size);
  for (size_t i = 0; i < map.size(); ++i) {
    const auto rec = std::vector<uint8_t>(raw.begin() + static_cast<long>(i * 20), raw.begin() + static_cast<long>(i * 20 + 20));
    CHECK(Le({rec.begin(), rec.begin() + 8}) == map[i].address);
    CHECK(Le({rec.begin() + 8, rec.begin() + 16}) == map[i].length);
    CHECK(Le({rec.begin() + 16, rec.end()}) == map[i].type);
  }
}

TEST_CASE("fw_cfg: bad names, duplicates and reserved keys are rejected") {
  FwCfg dev;
  CHECK(dev.AddFile("etc/x", {}).ok());
  CHECK(absl::IsAlreadyExists(dev.AddFile("etc/x", {}).status()));
  CHECK(absl::IsInvalidArgument(dev.AddFile(std::string(56, 'n'), {}).status()));
  CHECK(dev.AddFile(std::string(55, 'n'), {}).ok());
  CHECK(absl::IsInvalidArgument(dev.AddFile("", {}).status()));
  CHECK(absl::IsInvalidArgument(dev.SetItem(FwCfg::kFileDirKey, {1})));
  CHECK(absl::IsInvalidArgument(dev.SetItem(FwCfg::kFirstFileKey, {1})));
  CHECK(dev.SetItem(0x8003, {7}).ok());  // arch-local items are allowed
  CHECK(ReadItem(dev, 0x8003, 1)[0] == 7);
  CHECK(dev.SetItem(0x0002, {9, 9}).ok());
  CHECK(ReadItem(dev, 0x0002, 2) == std::vector<uint8_t>{9, 9});
}

}  // namespace
}  // namespace coalesce
