// A bzImage with a real setup header and a caller-chosen protected-mode payload, for loader tests.
#pragma once

#include <asm/bootparam.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace coalesce::testing {

struct FakeBzImage {
  uint16_t version = 0x020f;
  uint8_t setup_sects = 4;
  uint8_t loadflags = LOADED_HIGH;
  uint16_t xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
  uint8_t relocatable = 1;
  uint64_t pref_address = 16ULL << 20;
  uint32_t init_size = 8U << 20;
  uint32_t initrd_addr_max = 0x7fffffff;
  uint32_t cmdline_size = 2047;
  size_t payload = 64 * 1024;
  std::vector<uint8_t> code;  // copied to payload offset 0x200 (startup_64) when not empty
  // A compressed kernel, placed at payload_offset of the protected-mode code and announced in the setup
  // header (payload_offset/payload_length) when not empty. It must already end with the size word.
  std::vector<uint8_t> compressed;
  uint32_t payload_offset = 0x400;

  template <typename T>
  static void Poke(std::vector<uint8_t>& b, size_t off, T v) {
    std::memcpy(&b[off], &v, sizeof(T));
  }

  [[nodiscard]] std::vector<uint8_t> Build() const {
    const size_t setup = (static_cast<size_t>(setup_sects) + 1) * 512;
    const size_t code_bytes = compressed.empty() ? payload : std::max(payload, payload_offset + compressed.size());
    std::vector<uint8_t> b(setup + code_bytes, 0);
    b[0x1f1] = setup_sects;
    Poke<uint32_t>(b, 0x1f4, static_cast<uint32_t>(code_bytes / 16));
    Poke<uint16_t>(b, 0x1fe, 0xAA55);
    b[0x200] = 0xEB;
    b[0x201] = 0x6A;  // the header ends at 0x26c
    std::memcpy(&b[0x202], "HdrS", 4);
    Poke<uint16_t>(b, 0x206, version);
    Poke<uint32_t>(b, 0x214, 0x100000);
    b[0x211] = loadflags;
    Poke<uint32_t>(b, 0x22c, initrd_addr_max);
    Poke<uint32_t>(b, 0x230, 0x200000);
    b[0x234] = relocatable;
    Poke<uint16_t>(b, 0x236, xloadflags);
    Poke<uint32_t>(b, 0x238, cmdline_size);
    Poke<uint64_t>(b, 0x258, pref_address);
    Poke<uint32_t>(b, 0x260, init_size);
    for (size_t i = 0; i < code_bytes; ++i) b[setup + i] = static_cast<uint8_t>(i * 7 + 3);
    if (!code.empty()) std::memcpy(&b[setup + 0x200], code.data(), code.size());
    if (!compressed.empty()) {
      Poke<uint32_t>(b, 0x248, payload_offset);
      Poke<uint32_t>(b, 0x24c, static_cast<uint32_t>(compressed.size()));
      std::memcpy(&b[setup + payload_offset], compressed.data(), compressed.size());
    }
    return b;
  }
};

}  // namespace coalesce::testing
