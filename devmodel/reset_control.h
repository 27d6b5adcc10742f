// The "reset control register" at port 0xcf9 (PIIX/ICH style), which our FADT names as the ACPI reset
// register and Linux's reboot=pci uses: a write with RST_CPU (bit 2) set, e.g. 0x06 (soft) or 0x0e
// (hard), resets the machine through on_reset. Bits 1 (SYS_RST) and 3 (FULL_RST) read back as written.
//
// Port 0xcf9 sits inside the PCI configuration-address dword (0xcf8-0xcfb): a PCI host bridge must not
// claim 0xcf8 with size 4 on the same bus, or must forward byte accesses at 0xcf9 here.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/bus/bus_device.h"

namespace coalesce {

class ResetControl final : public BusDevice {
 public:
  static constexpr uint64_t kSize = 1;
  static constexpr uint8_t kSystemReset = 0x02;
  static constexpr uint8_t kResetCpu = 0x04;
  static constexpr uint8_t kFullReset = 0x08;

  // `on_reset` runs on the writing vCPU's thread with no device lock held; it should request the
  // machine's reset and return.
  explicit ResetControl(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "reset-control"; }

 private:
  const std::function<void()> on_reset_;
  absl::Mutex mu_;
  uint8_t value_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace coalesce
