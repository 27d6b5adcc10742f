// What a device on the PIO or MMIO bus implements. Devices see offsets from the start of their range,
// never absolute addresses, and never string-I/O repeats (the vCPU loop splits those).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace coalesce {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // Fill `data` (1, 2, 4 or 8 bytes, little-endian) for a read at `offset`.
  virtual void Read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void Write(uint64_t offset, std::span<const uint8_t> data) = 0;
  [[nodiscard]] virtual std::string_view name() const = 0;
};

// Little-endian helpers for devices.
inline uint64_t LoadLe(std::span<const uint8_t> d) {
  uint64_t v = 0;
  for (size_t i = 0; i < d.size() && i < 8; ++i) v |= static_cast<uint64_t>(d[i]) << (8 * i);
  return v;
}
inline void StoreLe(std::span<uint8_t> d, uint64_t v) {
  for (size_t i = 0; i < d.size() && i < 8; ++i) d[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace coalesce
