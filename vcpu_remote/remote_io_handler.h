// IoHandler of a vCPU that runs on an edge node: every PIO/MMIO access outside its own APIC is served by
// the home node's device bus, through NodeLink::ForwardIo. A lost home or a timeout stops the VM.
#pragma once

#include "hypervisor/vcpu/io_handler.h"
#include "hypervisor/vcpu/run_control.h"
#include "vcpu_remote/node_link.h"

namespace coalesce {

class RemoteIoHandler final : public IoHandler {
 public:
  RemoteIoHandler(NodeLink* link, RunControl* run_control, absl::Duration timeout)
      : link_(link), run_control_(run_control), timeout_(timeout) {}
  void PioRead(uint32_t vcpu, uint16_t port, std::span<uint8_t> data) override {
    Read(vcpu, node_msg::IoKind::kPioRead, port, data);
  }
  void PioWrite(uint32_t vcpu, uint16_t port, std::span<const uint8_t> data) override {
    Write(vcpu, node_msg::IoKind::kPioWrite, port, data);
  }
  void MmioRead(uint32_t vcpu, uint64_t addr, std::span<uint8_t> data) override {
    Read(vcpu, node_msg::IoKind::kMmioRead, addr, data);
  }
  void MmioWrite(uint32_t vcpu, uint64_t addr, std::span<const uint8_t> data) override {
    Write(vcpu, node_msg::IoKind::kMmioWrite, addr, data);
  }

 private:
  void Read(uint32_t vcpu, node_msg::IoKind kind, uint64_t addr, std::span<uint8_t> data);
  void Write(uint32_t vcpu, node_msg::IoKind kind, uint64_t addr, std::span<const uint8_t> data);

  NodeLink* link_;
  RunControl* run_control_;
  absl::Duration timeout_;
};

}  // namespace coalesce
