// The ACPI hotplug controller: how the VMM tells the guest that a CPU or a memory slot arrived or should go,
// and how the guest answers. One mechanism for both kinds (two instances at two port ranges); the register
// layout is in hypervisor/base/platform.h, the AML that drives it in hypervisor/boot/acpi_hotplug_aml.cc, the
// flows in docs/HOTPLUG.md.
//
// The guest knows every possible slot (CPU, or 128 MiB memory slot) from boot: an ACPI device each, whose
// _STA reads the present bitmap. Plug() sets a slot present and pending "inserted" and pulses the Generic
// Event Device's line; the guest's _EVT method scans the insert and remove bitmaps, acknowledges each bit and
// Notifies the slot's device (1: device check, 3: eject request). Linux then adds the CPU or the memory, or
// offlines it and calls _EJ0, which writes the eject register: the slot is absent from then on and
// AwaitEjected() returns.
//
// The VMM's side of a slot (a vCPU thread, guest RAM) is the machine's business; this device only keeps the
// guest's view. Writes naming a slot that is not possible, one below the kind's first removable slot (CPU 0)
// or an eject of a slot that is not present are ignored and counted (selecting any possible slot for its
// domain is allowed). Thread-safe: vCPU threads do the I/O,
// the control thread plugs; mu_ may be held while calling the IrqSink.
#pragma once

#include <array>
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

// What the slots are, for the device's name and its errors.
struct HotplugKind {
  std::string_view device_name;  // the bus device's name: "cpu-hotplug"
  std::string_view noun;         // one slot in messages: "CPU", "memory slot"
  uint32_t first_removable = 0;  // slots below it are always present (the bootstrap CPU)
  std::string_view limit_hint;   // how the user makes more slots possible: "coalesce run --max-vcpus"
  std::string_view guest_hint;   // what a guest needs to take a plug: "Linux needs CONFIG_ACPI_HOTPLUG_CPU"
};

inline constexpr HotplugKind kCpuHotplugKind{"cpu-hotplug", "CPU", 1, "coalesce run --max-vcpus",
                                             "Linux needs CONFIG_ACPI_HOTPLUG_CPU"};
inline constexpr HotplugKind kMemoryHotplugKind{"memory-hotplug", "memory slot", 0, "coalesce run --max-memory",
                                                "Linux needs CONFIG_ACPI_HOTPLUG_MEMORY"};

class HotplugController final : public BusDevice {
 public:
  // Slots 0..possible-1 may exist; 0..present_at_boot-1 do at reset. `irq_sink` must outlive the device.
  HotplugController(const HotplugKind& kind, IrqSink* irq_sink, uint32_t gsi, uint32_t possible,
                    uint32_t present_at_boot);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return kind_.device_name; }

  // Slot `id` arrives: present, and the guest is told. InvalidArgument for a slot that is always present or
  // not possible, FailedPrecondition if it is present already.
  absl::Status Plug(uint32_t id);
  // Asks the guest to give slot `id` up (it offlines it, then ejects it). The same errors, and
  // FailedPrecondition if it is not present.
  absl::Status RequestUnplug(uint32_t id);
  // Waits until the guest took the insert event of slot `id` (its scan acknowledged it): DeadlineExceeded
  // after `timeout` (a guest without ACPI hotplug support never does).
  absl::Status AwaitInsertTaken(uint32_t id, absl::Duration timeout);
  // Waits until the guest ejected slot `id`: DeadlineExceeded after `timeout` (the guest may refuse, e.g.
  // a CPU that is the last one of a task it cannot move, or memory it cannot migrate away).
  absl::Status AwaitEjected(uint32_t id, absl::Duration timeout);
  // The VM stops: every wait above returns at once (FailedPrecondition), and so does any later one.
  void CancelWaits();

  // The proximity domain slot `id` joins when it is plugged in (its _PXM reads it; 0 until set): a slot lent by
  // an edge attached after boot joins a domain reserved for such edges (docs/NUMA.md). Set it before Plug:
  // the guest reads _PXM when it adds the CPU or memory. The errors of Plug's first kind.
  absl::Status SetDomain(uint32_t id, uint8_t domain);
  [[nodiscard]] uint8_t domain(uint32_t id) const;

  [[nodiscard]] bool Present(uint32_t id) const;
  [[nodiscard]] std::vector<uint32_t> PresentSlots() const;
  [[nodiscard]] uint32_t possible() const { return possible_; }
  [[nodiscard]] uint64_t ignored_writes() const;

 private:
  using Bits = std::bitset<platform::kHotplugMaxSlots>;
  absl::Status CheckId(uint32_t id) const;
  void PulseIrq() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteByte(uint64_t offset, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const HotplugKind kind_;
  IrqSink* const irq_sink_;
  const uint32_t gsi_;
  const uint32_t possible_;

  mutable absl::Mutex mu_;
  Bits present_ ABSL_GUARDED_BY(mu_);
  Bits insert_pending_ ABSL_GUARDED_BY(mu_);
  Bits remove_pending_ ABSL_GUARDED_BY(mu_);
  std::array<uint8_t, platform::kHotplugMaxSlots> domain_ ABSL_GUARDED_BY(mu_) = {};
  uint32_t selected_ ABSL_GUARDED_BY(mu_) = 0;  // the slot kHotplugDomainOffset reads
  uint64_t ignored_writes_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce
