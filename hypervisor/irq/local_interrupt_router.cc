#include "hypervisor/irq/local_interrupt_router.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace coalesce {

absl::Status LocalInterruptRouter::AddApic(LocalApic* apic) {
  if (apic == nullptr) return absl::InvalidArgumentError("router: null APIC");
  const uint32_t id = apic->apic_id();
  if (id >= 0xff) return absl::InvalidArgumentError(absl::StrFormat("router: APIC id %u is not an xAPIC id", id));
  absl::MutexLock lock(&mu_);
  if (by_id_[id] != nullptr) return absl::AlreadyExistsError(absl::StrFormat("router: APIC id %u registered twice", id));
  by_id_[id] = apic;
  apics_.push_back(apic);
  return absl::OkStatus();
}

absl::Status LocalInterruptRouter::RemoveApic(uint32_t apic_id) {
  absl::MutexLock lock(&mu_);
  if (apic_id >= by_id_.size() || by_id_[apic_id] == nullptr) {
    return absl::NotFoundError(absl::StrFormat("router: APIC id %u is not registered here", apic_id));
  }
  LocalApic* apic = by_id_[apic_id];
  by_id_[apic_id] = nullptr;
  apics_.erase(std::find(apics_.begin(), apics_.end(), apic));
  return absl::OkStatus();
}

bool LocalInterruptRouter::MayAddressApic(const ApicMessage& msg, uint32_t apic_id) {
  switch (msg.shorthand) {
    case DestinationShorthand::kSelf: return msg.source_apic_id == apic_id;
    case DestinationShorthand::kAllIncludingSelf: return true;
    case DestinationShorthand::kAllExcludingSelf: return msg.source_apic_id != apic_id;
    case DestinationShorthand::kNone: break;
  }
  if (msg.destination_mode == DestinationMode::kLogical) return true;
  return msg.destination == 0xff || msg.destination == apic_id;
}

bool LocalInterruptRouter::Addresses(const LocalApic& apic, const ApicMessage& msg) {
  if (msg.shorthand != DestinationShorthand::kNone) return MayAddressApic(msg, apic.apic_id());
  return apic.MatchesDestination(msg.destination_mode, msg.destination);
}

bool LocalInterruptRouter::DeliverToApic(uint32_t apic_id, const ApicMessage& msg) {
  LocalApic* apic = nullptr;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (apic_id < by_id_.size()) apic = by_id_[apic_id];
  }
  if (apic == nullptr || !Addresses(*apic, msg)) return false;
  apic->Accept(msg);
  return true;
}

void LocalInterruptRouter::SetIoApic(IoApic* ioapic) {
  absl::MutexLock lock(&mu_);
  ioapic_ = ioapic;
}

bool LocalInterruptRouter::IsLocalApicId(uint32_t apic_id) const {
  absl::ReaderMutexLock lock(&mu_);
  return apic_id < by_id_.size() && by_id_[apic_id] != nullptr;
}

LocalInterruptRouter::Targets LocalInterruptRouter::LocalTargets(const ApicMessage& msg) const {
  Targets targets;
  absl::ReaderMutexLock lock(&mu_);
  switch (msg.shorthand) {
    case DestinationShorthand::kSelf:
      if (msg.source_apic_id < by_id_.size() && by_id_[msg.source_apic_id]) {
        targets.push_back(by_id_[msg.source_apic_id]);
      }
      return targets;
    case DestinationShorthand::kAllIncludingSelf:
      return apics_;
    case DestinationShorthand::kAllExcludingSelf:
      for (LocalApic* apic : apics_) {
        if (apic->apic_id() != msg.source_apic_id) targets.push_back(apic);
      }
      return targets;
    case DestinationShorthand::kNone:
      break;
  }
  if (msg.destination_mode == DestinationMode::kPhysical) {
    if (msg.destination == 0xff) return apics_;
    if (LocalApic* apic = by_id_[msg.destination]) targets.push_back(apic);
    return targets;
  }
  // Logical: each APIC compares against its own LDR/DFR (takes that APIC's lock briefly; the APIC never
  // calls the router while holding it, so this cannot deadlock).
  for (LocalApic* apic : apics_) {
    if (apic->MatchesDestination(DestinationMode::kLogical, msg.destination)) targets.push_back(apic);
  }
  return targets;
}

bool LocalInterruptRouter::MayAddressRemote(const ApicMessage& msg) const {
  if (!HasRemoteApics()) return false;
  switch (msg.shorthand) {
    case DestinationShorthand::kSelf: return false;
    case DestinationShorthand::kAllIncludingSelf:
    case DestinationShorthand::kAllExcludingSelf: return true;
    case DestinationShorthand::kNone: break;
  }
  if (msg.destination_mode == DestinationMode::kLogical) return true;  // remote LDRs are not known here
  return msg.destination == 0xff || !IsLocalApicId(msg.destination);
}

LocalApic* LocalInterruptRouter::Arbitrate(const Targets& targets) {
  // Rotate the starting point so that ties go round-robin instead of always to the same vCPU.
  const size_t n = targets.size();
  const size_t start = round_robin_.fetch_add(1, std::memory_order_relaxed) % n;
  LocalApic* best = nullptr;
  uint8_t best_priority = 0;
  bool best_enabled = false;
  for (size_t i = 0; i < n; ++i) {
    LocalApic* apic = targets[(start + i) % n];
    // A software-disabled APIC would drop the interrupt: prefer any enabled one.
    const bool enabled = apic->SoftwareEnabled();
    const uint8_t priority = apic->ArbitrationPriority();
    if (best == nullptr || (enabled && !best_enabled) ||
        (enabled == best_enabled && priority < best_priority)) {
      best = apic;
      best_priority = priority;
      best_enabled = enabled;
    }
  }
  return best;
}

bool LocalInterruptRouter::DeliverToLocal(const ApicMessage& msg) {
  const Targets targets = LocalTargets(msg);
  if (targets.empty()) return false;
  if (msg.delivery_mode == DeliveryMode::kLowestPriority) {
    Arbitrate(targets)->Accept(msg);
    return true;
  }
  for (LocalApic* apic : targets) apic->Accept(msg);
  return true;
}

void LocalInterruptRouter::Deliver(const ApicMessage& msg) {
  const bool delivered = DeliverToLocal(msg);
  const bool remote = MayAddressRemote(msg);
  // Lowest priority goes to exactly one APIC: forward only when no local one matched.
  if (remote && (!delivered || msg.delivery_mode != DeliveryMode::kLowestPriority)) {
    ForwardToRemote(msg);
    return;
  }
  if (!delivered) undeliverable_.fetch_add(1, std::memory_order_relaxed);
}

void LocalInterruptRouter::DeliverLocally(const ApicMessage& msg) {
  if (!DeliverToLocal(msg)) undeliverable_.fetch_add(1, std::memory_order_relaxed);
}

void LocalInterruptRouter::BroadcastEoi(uint8_t vector) {
  IoApic* ioapic;
  {
    absl::ReaderMutexLock lock(&mu_);
    ioapic = ioapic_;
  }
  if (ioapic != nullptr) ioapic->Eoi(vector);
}

}  // namespace coalesce
