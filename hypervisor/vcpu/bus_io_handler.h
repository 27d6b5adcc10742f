// IoHandler over the home node's PIO and MMIO buses.
#pragma once

#include "hypervisor/bus/bus.h"
#include "hypervisor/vcpu/io_handler.h"

namespace coalesce {

class BusIoHandler final : public IoHandler {
 public:
  BusIoHandler(Bus* pio, Bus* mmio) : pio_(pio), mmio_(mmio) {}
  void PioRead(uint32_t, uint16_t port, std::span<uint8_t> data) override { pio_->Read(port, data); }
  void PioWrite(uint32_t, uint16_t port, std::span<const uint8_t> data) override { pio_->Write(port, data); }
  void MmioRead(uint32_t, uint64_t addr, std::span<uint8_t> data) override { mmio_->Read(addr, data); }
  void MmioWrite(uint32_t, uint64_t addr, std::span<const uint8_t> data) override { mmio_->Write(addr, data); }

 private:
  Bus* pio_;
  Bus* mmio_;
};

}  // namespace coalesce
