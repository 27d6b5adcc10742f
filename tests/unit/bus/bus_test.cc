#include "hypervisor/bus/bus.h"

#include <catch2/catch.hpp>
#include <vector>

namespace coalesce {
namespace {

class RecordingDevice final : public BusDevice {
 public:
  void Read(uint64_t offset, std::span<uint8_t> data) override {
    last_offset = offset;
    StoreLe(data, 0x1122334455667788ULL + offset);
  }
  void Write(uint64_t offset, std::span<const uint8_t> data) override {
    last_offset = offset;
    last_value = LoadLe(data);
    writes++;
  }
  std::string_view name() const override { return "recorder"; }
  uint64_t last_offset = ~0ULL;
  uint64_t last_value = 0;
  int writes = 0;
};

TEST_CASE("bus dispatches by range and passes offsets") {
  Bus bus("pio");
  RecordingDevice a, b;
  REQUIRE(bus.Register(0x3f8, 8, &a).ok());
  REQUIRE(bus.Register(0x400, 0x10, &b).ok());
  uint8_t v = 0x5a;
  REQUIRE(bus.Write(0x3fd, {&v, 1}));
  CHECK(a.last_offset == 5);
  CHECK(a.last_value == 0x5a);
  uint8_t buf[2];
  REQUIRE(bus.Read(0x40f, buf));
  CHECK(b.last_offset == 0xf);
  CHECK(LoadLe(buf) == ((0x1122334455667788ULL + 0xf) & 0xffff));
  CHECK(bus.unclaimed_accesses() == 0);
}

TEST_CASE("bus rejects overlapping ranges, naming both devices") {
  Bus bus("mmio");
  RecordingDevice a, b;
  REQUIRE(bus.Register(0x1000, 0x100, &a).ok());
  auto s = bus.Register(0x10ff, 0x10, &b);
  CHECK(absl::IsAlreadyExists(s));
  CHECK(s.message().find("overlaps") != std::string::npos);
  CHECK(absl::IsAlreadyExists(bus.Register(0x0f00, 0x101, &b)));
  CHECK(absl::IsAlreadyExists(bus.Register(0x1000, 1, &b)));
  CHECK(bus.Register(0x1100, 0x10, &b).ok());  // adjacent is fine
  CHECK(bus.Register(0x0f00, 0x100, &b).ok());
  CHECK(!bus.Register(0x5000, 0, &b).ok());
}

TEST_CASE("unclaimed reads return all ones and are counted") {
  Bus bus("pio");
  uint8_t buf[4] = {0, 0, 0, 0};
  CHECK_FALSE(bus.Read(0x80, buf));
  for (uint8_t x : buf) CHECK(x == 0xff);
  uint8_t v = 1;
  CHECK_FALSE(bus.Write(0x80, {&v, 1}));
  CHECK_FALSE(bus.Read(0x80, buf));
  CHECK(bus.unclaimed_accesses() == 3);
}

}  // namespace
}  // namespace coalesce
