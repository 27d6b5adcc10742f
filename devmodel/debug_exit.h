// QEMU's isa-debug-exit at port 0xf4: a guest write of V ends the run with exit status (V << 1) | 1, so a
// test guest can report success or failure without a shutdown path. Reads return 0, as QEMU's do.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "hypervisor/bus/bus_device.h"

namespace coalesce {

class DebugExit final : public BusDevice {
 public:
  // One port; a wider write (outw/outl) carries a wider value, as QEMU's iosize property allows.
  static constexpr uint64_t kSize = 1;

  using ExitCallback = std::function<void(uint32_t exit_code)>;

  // `on_exit` runs on the vCPU thread that wrote the port, with no device lock held. It should request
  // the machine's stop and return; the vCPU goes on until the machine stops it.
  explicit DebugExit(ExitCallback on_exit) : on_exit_(std::move(on_exit)) {}

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "debug-exit"; }

  // The exit status QEMU reports for a written value.
  static uint32_t ExitCodeFor(uint64_t value) { return static_cast<uint32_t>((value << 1) | 1); }

 private:
  // No mutable state, so no lock: the callback is const after construction.
  const ExitCallback on_exit_;
};

}  // namespace coalesce
