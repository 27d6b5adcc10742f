#include "devmodel/hotplug_controller.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"

namespace coalesce {
namespace {

namespace p = platform;
constexpr uint64_t kBitmapBytes = p::kHotplugMaxSlots / 8;

uint8_t ByteOf(const std::bitset<p::kHotplugMaxSlots>& bits, uint64_t byte) {
  uint8_t v = 0;
  for (unsigned b = 0; b < 8; ++b) v |= static_cast<uint8_t>(bits[byte * 8 + b] ? 1u << b : 0u);
  return v;
}

}  // namespace

HotplugController::HotplugController(const HotplugKind& kind, IrqSink* irq_sink, uint32_t gsi, uint32_t possible,
                                     uint32_t present_at_boot)
    : kind_(kind), irq_sink_(irq_sink), gsi_(gsi), possible_(std::min(possible, p::kHotplugMaxSlots)) {
  for (uint32_t i = 0; i < std::min(present_at_boot, possible_); ++i) present_.set(i);
}

absl::Status HotplugController::CheckId(uint32_t id) const {
  if (id < kind_.first_removable) {
    return absl::InvalidArgumentError(absl::StrFormat("%s %u is always present", kind_.noun, id));
  }
  if (id >= possible_) {
    return absl::InvalidArgumentError(absl::StrFormat("%s %u is not possible in this guest (%ss 0-%u; %s)", kind_.noun,
                                                      id, kind_.noun, possible_ - 1, kind_.limit_hint));
  }
  return absl::OkStatus();
}

absl::Status HotplugController::Plug(uint32_t id) {
  if (absl::Status st = CheckId(id); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  if (present_[id]) return absl::FailedPreconditionError(absl::StrFormat("%s %u is present already", kind_.noun, id));
  present_.set(id);
  insert_pending_.set(id);
  remove_pending_.reset(id);
  PulseIrq();
  return absl::OkStatus();
}

absl::Status HotplugController::RequestUnplug(uint32_t id) {
  if (absl::Status st = CheckId(id); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  if (!present_[id]) return absl::FailedPreconditionError(absl::StrFormat("%s %u is not present", kind_.noun, id));
  remove_pending_.set(id);
  PulseIrq();
  return absl::OkStatus();
}

absl::Status HotplugController::AwaitInsertTaken(uint32_t id, absl::Duration timeout) {
  if (absl::Status st = CheckId(id); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  auto taken = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !insert_pending_[id] || cancelled_; };
  const bool done = mu_.AwaitWithTimeout(absl::Condition(&taken), timeout);
  if (cancelled_) return absl::FailedPreconditionError("the VM is stopping");
  if (!done) {
    return absl::DeadlineExceededError(
        absl::StrFormat("the guest did not take %s %u within %s (does it handle ACPI hotplug? %s)", kind_.noun, id,
                        absl::FormatDuration(timeout), kind_.guest_hint));
  }
  return absl::OkStatus();
}

absl::Status HotplugController::AwaitEjected(uint32_t id, absl::Duration timeout) {
  if (absl::Status st = CheckId(id); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  auto gone = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !present_[id] || cancelled_; };
  const bool done = mu_.AwaitWithTimeout(absl::Condition(&gone), timeout);
  if (cancelled_) return absl::FailedPreconditionError("the VM is stopping");
  if (!done) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "the guest did not eject %s %u within %s (it may refuse to offline it, or not handle ACPI hotplug)", kind_.noun,
        id, absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

void HotplugController::CancelWaits() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

absl::Status HotplugController::SetDomain(uint32_t id, uint8_t domain) {
  if (absl::Status st = CheckId(id); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  domain_[id] = domain;
  return absl::OkStatus();
}

uint8_t HotplugController::domain(uint32_t id) const {
  absl::MutexLock lock(&mu_);
  return id < possible_ ? domain_[id] : 0;
}

bool HotplugController::Present(uint32_t id) const {
  absl::MutexLock lock(&mu_);
  return id < possible_ && present_[id];
}

std::vector<uint32_t> HotplugController::PresentSlots() const {
  absl::MutexLock lock(&mu_);
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < possible_; ++i) {
    if (present_[i]) out.push_back(i);
  }
  return out;
}

uint64_t HotplugController::ignored_writes() const {
  absl::MutexLock lock(&mu_);
  return ignored_writes_;
}

void HotplugController::PulseIrq() {
  // Edge-triggered: a rising edge per event. The guest's _EVT scans every pending bit, so an edge that
  // arrives while it is still scanning is not lost (the IOAPIC latches it and _EVT runs again).
  irq_sink_->SetIrq(gsi_, true);
  irq_sink_->SetIrq(gsi_, false);
}

void HotplugController::Read(uint64_t offset, std::span<uint8_t> data) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    uint8_t v = 0;
    if (at >= p::kHotplugPresentOffset && at < p::kHotplugPresentOffset + kBitmapBytes) {
      v = ByteOf(present_, at - p::kHotplugPresentOffset);
    } else if (at >= p::kHotplugInsertOffset && at < p::kHotplugInsertOffset + kBitmapBytes) {
      v = ByteOf(insert_pending_, at - p::kHotplugInsertOffset);
    } else if (at >= p::kHotplugRemoveOffset && at < p::kHotplugRemoveOffset + kBitmapBytes) {
      v = ByteOf(remove_pending_, at - p::kHotplugRemoveOffset);
    } else if (at == p::kHotplugDomainOffset) {
      v = domain_[selected_];
    }
    data[i] = v;  // the write-only registers read as 0
  }
}

void HotplugController::Write(uint64_t offset, std::span<const uint8_t> data) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < data.size(); ++i) WriteByte(offset + i, data[i]);
}

void HotplugController::WriteByte(uint64_t offset, uint8_t id) {
  const bool valid = id >= kind_.first_removable && id < possible_;
  switch (offset) {
    case p::kHotplugAckInsertOffset:
      if (valid) {
        insert_pending_.reset(id);
        return;
      }
      break;
    case p::kHotplugAckRemoveOffset:
      if (valid) {
        remove_pending_.reset(id);
        return;
      }
      break;
    case p::kHotplugSelectOffset:
      if (id < possible_) {
        selected_ = id;
        return;
      }
      break;
    case p::kHotplugEjectOffset:
      if (valid && present_[id]) {
        present_.reset(id);
        remove_pending_.reset(id);
        LOG_INFO("%s: the guest ejected %s %u", kind_.device_name, kind_.noun, id);
        return;
      }
      break;
    default:
      break;
  }
  ++ignored_writes_;
  LOG_DEBUG("%s: ignored write of %u at offset %#x", kind_.device_name, id, static_cast<unsigned>(offset));
}

}  // namespace coalesce
