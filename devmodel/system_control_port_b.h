// Port 0x61, the PC's "system control port B": PIT channel 2's gate (bit 0) and speaker enable (bit 1)
// are read/write; bit 4 is the DRAM refresh toggle and bit 5 channel 2's output, both read-only. Linux's
// PIT TSC calibration raises the gate here and polls bit 5; old delay loops wait for bit 4 to flip, so
// it flips on every read (a real refresh clock flips every ~15 us, far less often than a VM exit).
//
// Lock order: mu_ is held while calling into the Pit8254 (which takes its own lock).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "devmodel/pit8254.h"
#include "hypervisor/bus/bus_device.h"

namespace coalesce {

class SystemControlPortB final : public BusDevice {
 public:
  static constexpr uint64_t kSize = 1;

  static constexpr uint8_t kTimer2Gate = 0x01;
  static constexpr uint8_t kSpeakerData = 0x02;
  static constexpr uint8_t kRefreshToggle = 0x10;
  static constexpr uint8_t kTimer2Output = 0x20;

  // `pit` must outlive this device.
  explicit SystemControlPortB(Pit8254* pit) : pit_(pit) {}

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "system-control-b"; }

 private:
  Pit8254* const pit_;
  absl::Mutex mu_;
  // Bits 0-3 as written (gate, speaker, parity and channel-check enables).
  uint8_t control_ ABSL_GUARDED_BY(mu_) = 0;
  bool refresh_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce
