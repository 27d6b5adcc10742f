// The CPU hotplug controller: how the VMM tells the guest that a CPU arrived or should go, and how the guest
// answers (ACPI; the register layout is in hypervisor/base/platform.h, the AML that drives it in
// hypervisor/boot/acpi_tables.cc, the flow in docs/HOTPLUG.md).
//
// The guest knows every possible CPU from the MADT (those absent at boot as disabled entries) and from one
// ACPI processor device each, whose _STA reads the present bitmap. Plug() sets a CPU present and pending
// "inserted" and pulses the Generic Event Device's line; the guest's _EVT method scans the insert and remove
// bitmaps, acknowledges each bit and Notifies the processor device (1: device check, 3: eject request).
// Linux then adds the CPU (an offline CPU the guest can online), or offlines it and calls _EJ0, which writes
// the eject register: the CPU is absent from then on and AwaitEjected() returns.
//
// The VMM's side of a CPU (its vCPU thread, where it runs) is the machine's business; this device only keeps
// the guest's view. Writes naming a CPU that is not possible, CPU 0 (never ejected) or an eject of a CPU
// that is not present are ignored and counted. Thread-safe: vCPU threads do the I/O, the control thread
// plugs; mu_ may be held while calling the IrqSink.
#pragma once

#include <bitset>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/bus/bus_device.h"
#include "hypervisor/irq/irq_sink.h"

namespace coalesce {

class CpuHotplug final : public BusDevice {
 public:
  // CPUs 0..possible-1 may exist; 0..present_at_boot-1 do at reset. `irq_sink` must outlive the device.
  CpuHotplug(IrqSink* irq_sink, uint32_t gsi, uint32_t possible, uint32_t present_at_boot);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "cpu-hotplug"; }

  // CPU `id` arrives: present, and the guest is told. InvalidArgument for CPU 0 or one not possible,
  // FailedPrecondition if it is present already.
  absl::Status Plug(uint32_t id);
  // Asks the guest to give CPU `id` up (it offlines it, then ejects it). The same errors, and
  // FailedPrecondition if it is not present.
  absl::Status RequestUnplug(uint32_t id);
  // Waits until the guest took the insert event of CPU `id` (its scan acknowledged it): DeadlineExceeded after
  // `timeout` (a guest without ACPI hotplug support never does).
  absl::Status AwaitInsertTaken(uint32_t id, absl::Duration timeout);
  // Waits until the guest ejected CPU `id`: DeadlineExceeded after `timeout` (the guest may refuse, e.g.
  // when the CPU is the last one of a task it cannot move, or never run ACPI at all).
  absl::Status AwaitEjected(uint32_t id, absl::Duration timeout);
  // The VM stops: every wait above returns at once (FailedPrecondition), and so does any later one.
  void CancelWaits();

  [[nodiscard]] bool Present(uint32_t id) const;
  [[nodiscard]] std::vector<uint32_t> PresentCpus() const;
  [[nodiscard]] uint32_t possible() const { return possible_; }
  [[nodiscard]] uint64_t ignored_writes() const;

 private:
  using Bits = std::bitset<platform::kCpuHotplugMaxCpus>;
  absl::Status CheckId(uint32_t id) const;
  void PulseIrq() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteByte(uint64_t offset, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  IrqSink* const irq_sink_;
  const uint32_t gsi_;
  const uint32_t possible_;

  mutable absl::Mutex mu_;
  Bits present_ ABSL_GUARDED_BY(mu_);
  Bits insert_pending_ ABSL_GUARDED_BY(mu_);
  Bits remove_pending_ ABSL_GUARDED_BY(mu_);
  uint64_t ignored_writes_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce
