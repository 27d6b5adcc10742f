#include "devmodel/cpu_hotplug.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"

namespace coalesce {
namespace {

namespace p = platform;
constexpr uint64_t kBitmapBytes = p::kCpuHotplugMaxCpus / 8;

uint8_t ByteOf(const std::bitset<p::kCpuHotplugMaxCpus>& bits, uint64_t byte) {
  uint8_t v = 0;
  for (unsigned b = 0; b < 8; ++b) v |= static_cast<uint8_t>(bits[byte * 8 + b] ? 1u << b : 0u);
  return v;
}

}  // namespace

CpuHotplug::CpuHotplug(IrqSink* irq_sink, uint32_t gsi, uint32_t possible, uint32_t present_at_boot)
    : irq_sink_(irq_sink), gsi_(gsi), possible_(std::min(possible, p::kCpuHotplugMaxCpus)) {
  for (uint32_t i = 0; i < std::min(present_at_boot, possible_); ++i) present_.set(i);
}

absl::Status CpuHotplug::CheckId(uint32_t id) const {
  if (id == 0) return absl::InvalidArgumentError("CPU 0 (the bootstrap processor) is always present");
  if (id >= possible_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("CPU %u is not possible in this guest (CPUs 0-%u; coalesce run --max-vcpus)", id,
                        possible_ - 1));
  }
  return absl::OkStatus();
}

absl::Status CpuHotplug::Plug(uint32_t id) {
  if (absl::Status st = CheckId(id); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  if (present_[id]) return absl::FailedPreconditionError(absl::StrFormat("CPU %u is present already", id));
  present_.set(id);
  insert_pending_.set(id);
  remove_pending_.reset(id);
  PulseIrq();
  return absl::OkStatus();
}

absl::Status CpuHotplug::RequestUnplug(uint32_t id) {
  if (absl::Status st = CheckId(id); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  if (!present_[id]) return absl::FailedPreconditionError(absl::StrFormat("CPU %u is not present", id));
  remove_pending_.set(id);
  PulseIrq();
  return absl::OkStatus();
}

absl::Status CpuHotplug::AwaitInsertTaken(uint32_t id, absl::Duration timeout) {
  if (absl::Status st = CheckId(id); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  auto taken = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !insert_pending_[id] || cancelled_; };
  const bool done = mu_.AwaitWithTimeout(absl::Condition(&taken), timeout);
  if (cancelled_) return absl::FailedPreconditionError("the VM is stopping");
  if (!done) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "the guest did not take CPU %u within %s (does it handle ACPI CPU hotplug? Linux needs "
        "CONFIG_ACPI_HOTPLUG_CPU)",
        id, absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

absl::Status CpuHotplug::AwaitEjected(uint32_t id, absl::Duration timeout) {
  if (absl::Status st = CheckId(id); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  auto gone = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !present_[id] || cancelled_; };
  const bool done = mu_.AwaitWithTimeout(absl::Condition(&gone), timeout);
  if (cancelled_) return absl::FailedPreconditionError("the VM is stopping");
  if (!done) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "the guest did not eject CPU %u within %s (it may refuse to offline it, or not handle ACPI hotplug)",
        id, absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

void CpuHotplug::CancelWaits() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

bool CpuHotplug::Present(uint32_t id) const {
  absl::MutexLock lock(&mu_);
  return id < possible_ && present_[id];
}

std::vector<uint32_t> CpuHotplug::PresentCpus() const {
  absl::MutexLock lock(&mu_);
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < possible_; ++i) {
    if (present_[i]) out.push_back(i);
  }
  return out;
}

uint64_t CpuHotplug::ignored_writes() const {
  absl::MutexLock lock(&mu_);
  return ignored_writes_;
}

void CpuHotplug::PulseIrq() {
  // Edge-triggered: a rising edge per event. The guest's _EVT scans every pending bit, so an edge that
  // arrives while it is still scanning is not lost (the IOAPIC latches it and _EVT runs again).
  irq_sink_->SetIrq(gsi_, true);
  irq_sink_->SetIrq(gsi_, false);
}

void CpuHotplug::Read(uint64_t offset, std::span<uint8_t> data) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    uint8_t v = 0;
    if (at >= p::kCpuHotplugPresentOffset && at < p::kCpuHotplugPresentOffset + kBitmapBytes) {
      v = ByteOf(present_, at - p::kCpuHotplugPresentOffset);
    } else if (at >= p::kCpuHotplugInsertOffset && at < p::kCpuHotplugInsertOffset + kBitmapBytes) {
      v = ByteOf(insert_pending_, at - p::kCpuHotplugInsertOffset);
    } else if (at >= p::kCpuHotplugRemoveOffset && at < p::kCpuHotplugRemoveOffset + kBitmapBytes) {
      v = ByteOf(remove_pending_, at - p::kCpuHotplugRemoveOffset);
    }
    data[i] = v;  // the write-only registers read as 0
  }
}

void CpuHotplug::Write(uint64_t offset, std::span<const uint8_t> data) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < data.size(); ++i) WriteByte(offset + i, data[i]);
}

void CpuHotplug::WriteByte(uint64_t offset, uint8_t id) {
  const bool valid = id != 0 && id < possible_;
  switch (offset) {
    case p::kCpuHotplugAckInsertOffset:
      if (valid) {
        insert_pending_.reset(id);
        return;
      }
      break;
    case p::kCpuHotplugAckRemoveOffset:
      if (valid) {
        remove_pending_.reset(id);
        return;
      }
      break;
    case p::kCpuHotplugEjectOffset:
      if (valid && present_[id]) {
        present_.reset(id);
        remove_pending_.reset(id);
        LOG_INFO("cpu-hotplug: the guest ejected CPU %u", id);
        return;
      }
      break;
    default:
      break;
  }
  ++ignored_writes_;
  LOG_DEBUG("cpu-hotplug: ignored write of %u at offset %#x", id, static_cast<unsigned>(offset));
}

}  // namespace coalesce
