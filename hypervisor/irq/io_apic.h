// The I/O APIC (82093AA-style, version 0x11): 24 input pins, each with a 64-bit redirection entry that
// turns a pin's edge or level into an ApicMessage for the InterruptRouter. MMIO at platform::kIoapicBase
// through the indirect IOREGSEL (offset 0x00) / IOWIN (offset 0x10) pair.
//
// Level-triggered pins set remote IRR when delivered and are not delivered again until a local APIC EOIs
// the vector (Eoi(), reached through InterruptRouter::BroadcastEoi); if the line is still asserted then,
// the interrupt is delivered again. Edges on a masked pin are lost, as on the 82093AA.
//
// Polarity is stored and read back but not applied: SetPin() takes the logical "asserted" state of the
// line (the machine's devices and MADT are all active-high), as QEMU's and KVM's IOAPICs do.
//
// Thread model and lock order: any thread may call SetPin / Eoi / MMIO. mu_ is a leaf: messages are built
// under mu_ and handed to router_->Deliver only after mu_ is released, so Deliver -> LocalApic::Accept ->
// kick never runs under this lock, and an EOI arriving from the router (which holds no lock) cannot
// deadlock with a delivery in flight.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/inlined_vector.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/bus/bus_device.h"
#include "hypervisor/irq/apic_message.h"
#include "hypervisor/irq/interrupt_router.h"

namespace coalesce {

class IoApic final : public BusDevice {
 public:
  static constexpr uint32_t kPins = platform::kIoapicPins;
  // Version register: max redirection entry 23 in bits 16-23, version 0x11.
  static constexpr uint32_t kVersionValue = 0x0017'0011;

  // `router` is not owned and must outlive this object. `ioapic_id` is the id the MADT declares.
  explicit IoApic(InterruptRouter* router, uint8_t ioapic_id = 0);
  IoApic(const IoApic&) = delete;
  IoApic& operator=(const IoApic&) = delete;

  // BusDevice: offsets within the 4 KiB window.
  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "ioapic"; }

  // Drives input pin `pin` (a GSI below kPins). Out-of-range pins are counted and ignored.
  void SetPin(uint32_t pin, bool level);
  // A local APIC EOIed `vector`: clear remote IRR of the level-triggered entries with that vector and
  // deliver again those whose line is still asserted.
  void Eoi(uint8_t vector);
  // Power-on state: all entries masked, edge, remote IRR clear. Pin levels are kept (they are wires).
  void Reset();

  // The raw 64-bit redirection entry, for debugging and tests. Out-of-range pins read 0.
  [[nodiscard]] uint64_t RedirectionEntry(uint32_t pin) const;
  // Guest-caused anomalies (bad accesses, reserved delivery modes, bad pins), for counters and tests.
  [[nodiscard]] uint64_t anomalies() const;

 private:
  using Messages = absl::InlinedVector<ApicMessage, 4>;

  uint32_t ReadIndirectLocked(uint32_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteIndirectLocked(uint32_t index, uint32_t value, Messages* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Delivers pin's interrupt if its entry allows it now (unmasked; for level: asserted and no remote
  // IRR, which it then sets). Appends the message to *out.
  void ServiceLocked(uint32_t pin, Messages* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteAnomalyLocked(std::string_view what, uint64_t detail) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeliverAll(const Messages& messages);

  InterruptRouter* const router_;

  mutable absl::Mutex mu_;
  uint32_t select_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t id_ ABSL_GUARDED_BY(mu_) = 0;  // bits 24-27 of the ID register
  std::array<uint64_t, kPins> entries_ ABSL_GUARDED_BY(mu_){};
  std::bitset<kPins> levels_ ABSL_GUARDED_BY(mu_);  // current input line levels
  uint64_t anomalies_ ABSL_GUARDED_BY(mu_) = 0;
  bool anomaly_logged_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce
