#include "devmodel/debug_exit.h"

#include <catch2/catch.hpp>
#include <vector>

#include "devmodel/reset_control.h"
#include "tests/unit/devmodel/recording_irq_sink.h"

namespace coalesce {
namespace {

TEST_CASE("debug-exit maps a written value V to (V << 1) | 1") {
  std::vector<uint32_t> codes;
  DebugExit dev([&](uint32_t code) { codes.push_back(code); });
  Outb(dev, 0, 0x10);
  Outb(dev, 0, 0x00);
  Outw(dev, 0, 0x1234);
  REQUIRE(codes.size() == 3);
  CHECK(codes[0] == 0x21);
  CHECK(codes[1] == 1);
  CHECK(codes[2] == 0x2469);
  CHECK(DebugExit::ExitCodeFor(0xff) == 0x1ff);
  CHECK(Inb(dev, 0) == 0);  // reads return 0, as QEMU's
}

TEST_CASE("reset register resets on RST_CPU only") {
  int resets = 0;
  ResetControl dev([&] { ++resets; });
  Outb(dev, 0, 0x02);  // Linux first selects a hard reset...
  CHECK(resets == 0);
  CHECK(Inb(dev, 0) == 0x02);
  Outb(dev, 0, 0x06);  // ...then pulls RST_CPU
  CHECK(resets == 1);
  Outb(dev, 0, 0x0e);
  CHECK(resets == 2);
  CHECK(Inb(dev, 0) == 0x0a);  // RST_CPU does not read back
}

}  // namespace
}  // namespace coalesce
