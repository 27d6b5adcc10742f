// The virtio-mmio transport, version 2 (virtio 1.2, section 4.2): the register block a driver uses to find,
// negotiate and configure one virtio device, on the MMIO bus. The guest finds it through the DSDT's LNRO0005
// entry (hypervisor/boot/acpi_tables.h), not the command line: Debian's cloud kernel lacks
// VIRTIO_MMIO_CMDLINE_DEVICES. The line is high while InterruptStatus != 0 and declared edge-triggered: the
// guest acknowledges before it reads the used ring, so no completion is lost, and its EOI needs no IOAPIC
// (docs/DISKS.md). The registers are also kept in a RegisterMirror, which the machine maps read-only over the
// window, so that the guest's reads (InterruptStatus on every interrupt) need no exit.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "devmodel/virtio/register_mirror.h"
#include "devmodel/virtio/virtio_device.h"
#include "hypervisor/bus/bus_device.h"
#include "hypervisor/irq/irq_sink.h"

namespace coalesce::virtio {

class VirtioMmio final : public BusDevice {
 public:
  static constexpr uint64_t kSize = 0x200;  // registers (0x100) + device configuration space
  static constexpr uint32_t kMagic = 0x74726976;  // "virt"
  static constexpr uint32_t kVendorId = 0x4c414f43;  // "COAL"
  static constexpr uint64_t kQueueNotifyOffset = 0x050;
  static constexpr uint64_t kInterruptAckOffset = 0x064;

  VirtioMmio(std::unique_ptr<VirtioDevice> device, IrqSink* irq, uint32_t gsi);
  ~VirtioMmio() override;

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return name_; }

  [[nodiscard]] const VirtioDevice& device() const { return *device_; }
  // For a halt-polling vCPU: completions the device can raise before its own thread would (VirtioDevice::PollUsed).
  bool PollUsed() { return device_->PollUsed(); }
  // Every register at its offset as Read() would return it for an aligned 32-bit read (the configuration space
  // too), kept current; the rest of the page reads 0.
  [[nodiscard]] const RegisterMirror& mirror() const { return mirror_; }

  // InterruptACK writes may arrive late (KVM's coalesced MMIO ring: the guest's write does not exit, the VMM
  // replays it later). `flush` replays every such write still pending; the transport calls it before it sets a
  // new InterruptStatus bit, so that an acknowledgement the guest made earlier cannot clear a later completion
  // (the handler that acknowledged reads the used ring after it, and sees every entry published before).
  // InterruptACK takes only irq_mu_, so `flush` may run while this transport's mu_ is held. Set before the
  // guest runs.
  void SetPostedWriteFlush(std::function<void()> flush) { flush_posted_writes_ = std::move(flush); }

  // Teardown, once the vCPUs are joined: stops the device, so no interrupt is raised after this returns.
  void Quiesce();

  // Counters for tests and stats.
  [[nodiscard]] uint64_t notifies() const;
  [[nodiscard]] uint64_t interrupts() const;

 private:
  struct Queue {
    uint16_t size = 0;
    bool ready = false;
    uint64_t desc = 0, driver = 0, device = 0;
  };
  uint32_t ReadRegister(uint64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteRegister(uint64_t offset, uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteStatus(uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores what a register write may have changed; InterruptStatus is stored by whoever changes it, under irq_mu_.
  void RefreshMirrorLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Queue* SelectedQueue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Interrupt status: bits set by the device side (any thread) and cleared by InterruptACK. The line follows.
  void RaiseInterrupt(uint32_t bits);
  void AckInterrupt(uint32_t bits);

  const std::unique_ptr<VirtioDevice> device_;
  IrqSink* const irq_;
  const uint32_t gsi_;
  const std::string name_;

  RegisterMirror mirror_;
  std::function<void()> flush_posted_writes_;
  mutable absl::Mutex mu_;  // the registers; held across device Activate/Reset (they do the back end's I/O)
  uint32_t status_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t device_features_sel_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t driver_features_sel_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t driver_features_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t queue_sel_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t config_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Queue> queues_ ABSL_GUARDED_BY(mu_);
  uint64_t notifies_ ABSL_GUARDED_BY(mu_) = 0;

  // A leaf below mu_: the device's completion thread raises interrupts without waiting for the registers, so
  // Reset may wait for that thread while holding mu_.
  mutable absl::Mutex irq_mu_ ABSL_ACQUIRED_AFTER(mu_);
  uint32_t interrupt_status_ ABSL_GUARDED_BY(irq_mu_) = 0;
  uint64_t interrupts_ ABSL_GUARDED_BY(irq_mu_) = 0;
};

}  // namespace coalesce::virtio
