// The InterruptRouter for the vCPUs of this process: resolves an ApicMessage's destination (shorthands
// against the sender, physical ids including the 0xff broadcast, logical flat/cluster through each APIC's
// LDR/DFR), picks one target for lowest-priority delivery, and sends level-triggered EOIs to the IOAPIC.
//
// Coalesced VMs: a node holds only some vCPUs. A subclass forwards what may address APICs elsewhere by
// overriding HasRemoteApics() and ForwardToRemote(); messages that arrive from another node are handed to
// DeliverLocally(), which never forwards (so a message cannot bounce between nodes). Lowest-priority
// messages go to a local APIC when one matches and are forwarded only when none does: cross-node
// arbitration would cost a round trip for a choice the guest leaves to the hardware anyway.
//
// Thread model and lock order: Deliver / BroadcastEoi may be called from any thread (vCPU MMIO exits,
// device threads through the IOAPIC, the timer thread). mu_ guards only the registration tables and is
// released before LocalApic::Accept, LocalApic queries, IoApic::Eoi or ForwardToRemote are called, so the
// router never holds a lock while calling out. Callers must not hold a LocalApic's or the IoApic's lock
// (they do not: both release theirs before calling the router).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/irq/interrupt_router.h"
#include "hypervisor/irq/io_apic.h"
#include "hypervisor/irq/local_apic.h"

namespace coalesce {

class LocalInterruptRouter : public InterruptRouter {
 public:
  LocalInterruptRouter() = default;
  ~LocalInterruptRouter() override = default;
  LocalInterruptRouter(const LocalInterruptRouter&) = delete;
  LocalInterruptRouter& operator=(const LocalInterruptRouter&) = delete;

  // Registers a vCPU's APIC (not owned; must outlive the router). Ids must be unique and below 0xff
  // (0xff is the xAPIC broadcast address).
  absl::Status AddApic(LocalApic* apic);
  // Unregisters APIC `apic_id` (its vCPU moved to another node); NotFound if it is not registered.
  absl::Status RemoveApic(uint32_t apic_id);
  // The IOAPIC that receives EOI broadcasts (not owned), or nullptr.
  void SetIoApic(IoApic* ioapic);

  // InterruptRouter.
  void Deliver(const ApicMessage& msg) override;
  void BroadcastEoi(uint8_t vector) override;

  // Delivers to the APICs registered here only, never forwarding: the entry point for messages another
  // node forwarded to this one.
  void DeliverLocally(const ApicMessage& msg);

  // Delivers `msg` to APIC `apic_id` only, if it is registered here and `msg` addresses it (an interrupt
  // that must reach one vCPU that moved while the message was in flight). Returns whether it was accepted.
  bool DeliverToApic(uint32_t apic_id, const ApicMessage& msg);

  // Whether `msg` may address the APIC with id `apic_id` when that APIC's logical destination is unknown
  // (pure: logical destinations and the all-* shorthands may).
  [[nodiscard]] static bool MayAddressApic(const ApicMessage& msg, uint32_t apic_id);
  // Whether `msg` addresses `apic` (its id, LDR and DFR now).
  [[nodiscard]] static bool Addresses(const LocalApic& apic, const ApicMessage& msg);

  // Messages that addressed no APIC (here or, as far as this router knows, elsewhere).
  [[nodiscard]] uint64_t undeliverable() const { return undeliverable_.load(std::memory_order_relaxed); }

 protected:
  // Hooks for a router that knows vCPUs on other nodes.
  // Whether any APIC lives on another node; false (the default) means ForwardToRemote is never called.
  [[nodiscard]] virtual bool HasRemoteApics() const { return false; }
  // Sends `msg` (as the guest addressed it, shorthands unresolved, source_apic_id set) to the nodes whose
  // APICs it may address: physical ids not registered here, 0xff, logical destinations, all / all-but-self
  // shorthands; lowest priority only when no local APIC matched. Called with no router lock held.
  virtual void ForwardToRemote(const ApicMessage& msg) { (void)msg; }
  // Whether physical id `apic_id` is registered with this router.
  [[nodiscard]] bool IsLocalApicId(uint32_t apic_id) const;

 private:
  using Targets = absl::InlinedVector<LocalApic*, 8>;

  // The local APICs `msg` addresses (all of them for lowest priority: arbitration happens after).
  Targets LocalTargets(const ApicMessage& msg) const;
  // Whether `msg` may also address APICs that are not registered here.
  bool MayAddressRemote(const ApicMessage& msg) const;
  // Lowest-priority arbitration: lowest APR among software-enabled APICs, ties rotating.
  LocalApic* Arbitrate(const Targets& targets);
  // Delivers to local targets; returns false if there were none.
  bool DeliverToLocal(const ApicMessage& msg);

  mutable absl::Mutex mu_;
  Targets apics_ ABSL_GUARDED_BY(mu_);
  std::array<LocalApic*, 256> by_id_ ABSL_GUARDED_BY(mu_){};
  IoApic* ioapic_ ABSL_GUARDED_BY(mu_) = nullptr;

  std::atomic<uint32_t> round_robin_{0};
  std::atomic<uint64_t> undeliverable_{0};
};

}  // namespace coalesce
