#include "hypervisor/irq/io_apic.h"

#include <algorithm>

#include "hypervisor/base/log.h"

namespace coalesce {
namespace {

// Indirect register indices.
constexpr uint32_t kRegId = 0x00;
constexpr uint32_t kRegVersion = 0x01;
constexpr uint32_t kRegArbitration = 0x02;
constexpr uint32_t kRegRedirectionBase = 0x10;  // entry n: low at 0x10 + 2n, high at 0x11 + 2n

// Direct (MMIO) offsets.
constexpr uint64_t kIoRegSel = 0x00;
constexpr uint64_t kIoWin = 0x10;

// Redirection entry fields.
constexpr uint64_t kDeliveryStatus = 1ULL << 12;
constexpr uint64_t kRemoteIrr = 1ULL << 14;
constexpr uint64_t kLevelTriggered = 1ULL << 15;
constexpr uint64_t kMasked = 1ULL << 16;
// Software may write vector, delivery mode, destination mode, polarity, trigger mode, mask, destination.
constexpr uint64_t kWritableLow = 0x0001'afffULL;
constexpr uint64_t kWritableHigh = 0xff00'0000ULL;
constexpr uint64_t kResetEntry = kMasked;

}  // namespace

IoApic::IoApic(InterruptRouter* router, uint8_t ioapic_id) : router_(router) {
  absl::MutexLock lock(&mu_);
  id_ = static_cast<uint32_t>(ioapic_id & 0xf) << 24;
  entries_.fill(kResetEntry);
}

void IoApic::Reset() {
  absl::MutexLock lock(&mu_);
  select_ = 0;
  entries_.fill(kResetEntry);
}

void IoApic::Read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  uint32_t value = 0;
  {
    absl::MutexLock lock(&mu_);
    const uint64_t reg = offset & ~0xfULL;
    if (reg == kIoRegSel) {
      value = select_;
    } else if (reg == kIoWin) {
      value = ReadIndirectLocked(select_);
    } else {
      NoteAnomalyLocked("read of unimplemented offset", offset);
      return;
    }
  }
  const uint64_t byte = offset & 0xf;
  for (size_t i = 0; i < data.size(); ++i) {
    if (byte + i < 4) data[i] = static_cast<uint8_t>(value >> (8 * (byte + i)));
  }
}

void IoApic::Write(uint64_t offset, std::span<const uint8_t> data) {
  Messages to_deliver;
  {
    absl::MutexLock lock(&mu_);
    if (offset == kIoRegSel && !data.empty()) {
      select_ = data[0];  // IOREGSEL is an 8-bit register; byte and dword writes both work
    } else if (offset == kIoWin && data.size() == 4) {
      WriteIndirectLocked(select_, static_cast<uint32_t>(LoadLe(data)), &to_deliver);
    } else {
      NoteAnomalyLocked("unsupported write (offset, size<<32)", offset | (uint64_t{data.size()} << 32));
    }
  }
  DeliverAll(to_deliver);
}

uint32_t IoApic::ReadIndirectLocked(uint32_t index) {
  switch (index) {
    case kRegId: return id_;
    case kRegVersion: return kVersionValue;
    case kRegArbitration: return id_;  // the arbitration id is loaded from the APIC id
    default: break;
  }
  if (index >= kRegRedirectionBase && index < kRegRedirectionBase + 2 * kPins) {
    const uint64_t entry = entries_[(index - kRegRedirectionBase) / 2];
    return (index & 1) ? static_cast<uint32_t>(entry >> 32) : static_cast<uint32_t>(entry);
  }
  NoteAnomalyLocked("read of unimplemented register", index);
  return 0;
}

void IoApic::WriteIndirectLocked(uint32_t index, uint32_t value, Messages* out) {
  if (index == kRegId) {
    id_ = value & 0x0f00'0000;
    return;
  }
  if (index < kRegRedirectionBase || index >= kRegRedirectionBase + 2 * kPins) {
    NoteAnomalyLocked("write of read-only or unimplemented register", index);
    return;
  }
  const uint32_t pin = (index - kRegRedirectionBase) / 2;
  uint64_t& entry = entries_[pin];
  if (index & 1) {
    entry = (entry & 0xffff'ffffULL) | ((uint64_t{value} << 32) & (kWritableHigh << 32));
    return;
  }
  // Low word: delivery status and remote IRR are read-only.
  entry = (entry & 0xffff'ffff'0000'0000ULL) | (entry & (kDeliveryStatus | kRemoteIrr)) |
          (uint64_t{value} & kWritableLow);
  // Remote IRR only means something for level-triggered entries.
  if (!(entry & kLevelTriggered)) entry &= ~kRemoteIrr;
  // Unmasking (or reprogramming) a level pin whose line is asserted delivers it now. Edges that came
  // while masked are gone.
  if (entry & kLevelTriggered) ServiceLocked(pin, out);
}

void IoApic::ServiceLocked(uint32_t pin, Messages* out) {
  uint64_t& entry = entries_[pin];
  if (entry & kMasked) return;
  const bool level = (entry & kLevelTriggered) != 0;
  if (level && (!levels_.test(pin) || (entry & kRemoteIrr))) return;

  ApicMessage msg;
  msg.vector = static_cast<uint8_t>(entry & 0xff);
  msg.destination_mode = (entry & (1ULL << 11)) ? DestinationMode::kLogical : DestinationMode::kPhysical;
  msg.destination = static_cast<uint8_t>(entry >> 56);
  msg.shorthand = DestinationShorthand::kNone;
  msg.level_assert = true;
  switch ((entry >> 8) & 7) {
    case 0: msg.delivery_mode = DeliveryMode::kFixed; break;
    case 1: msg.delivery_mode = DeliveryMode::kLowestPriority; break;
    case 2: msg.delivery_mode = DeliveryMode::kSmi; break;
    case 4: msg.delivery_mode = DeliveryMode::kNmi; break;
    case 5: msg.delivery_mode = DeliveryMode::kInit; break;
    case 7: msg.delivery_mode = DeliveryMode::kExtInt; break;
    default:
      NoteAnomalyLocked("reserved delivery mode on pin", pin);
      return;
  }
  const bool vectored =
      msg.delivery_mode == DeliveryMode::kFixed || msg.delivery_mode == DeliveryMode::kLowestPriority;
  // Only vectored interrupts are EOIed, so only they may wait on remote IRR; NMI/INIT/ExtINT programmed
  // as level would otherwise block the pin forever.
  msg.level_triggered = level && vectored;
  if (msg.level_triggered) entry |= kRemoteIrr;
  out->push_back(msg);
}

void IoApic::SetPin(uint32_t pin, bool level) {
  Messages to_deliver;
  {
    absl::MutexLock lock(&mu_);
    if (pin >= kPins) {
      NoteAnomalyLocked("SetPin on a pin that does not exist", pin);
      return;
    }
    const bool was = levels_.test(pin);
    levels_.set(pin, level);
    const bool level_triggered = (entries_[pin] & kLevelTriggered) != 0;
    if (level && (level_triggered || !was)) ServiceLocked(pin, &to_deliver);
  }
  DeliverAll(to_deliver);
}

void IoApic::Eoi(uint8_t vector) {
  Messages to_deliver;
  {
    absl::MutexLock lock(&mu_);
    for (uint32_t pin = 0; pin < kPins; ++pin) {
      uint64_t& entry = entries_[pin];
      if ((entry & 0xff) != vector || !(entry & kLevelTriggered) || !(entry & kRemoteIrr)) continue;
      entry &= ~kRemoteIrr;
      ServiceLocked(pin, &to_deliver);  // still asserted: the device wants service again
    }
  }
  DeliverAll(to_deliver);
}

void IoApic::DeliverAll(const Messages& messages) {
  for (const ApicMessage& msg : messages) router_->Deliver(msg);
}

uint64_t IoApic::RedirectionEntry(uint32_t pin) const {
  absl::MutexLock lock(&mu_);
  return pin < kPins ? entries_[pin] : 0;
}

uint64_t IoApic::anomalies() const {
  absl::MutexLock lock(&mu_);
  return anomalies_;
}

void IoApic::NoteAnomalyLocked(std::string_view what, uint64_t detail) {
  ++anomalies_;
  if (anomaly_logged_) return;  // a guest looping on a bad access must not flood the log
  anomaly_logged_ = true;
  LOG_WARN("ioapic: %s (%#x); further anomalies are only counted", std::string(what), detail);
}

}  // namespace coalesce
