#include "devmodel/virtio/virtio_mmio.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"

namespace coalesce::virtio {
namespace {

// Register offsets (virtio 1.2, table 4.1).
enum Reg : uint64_t {
  kRegMagic = 0x000,
  kRegVersion = 0x004,
  kRegDeviceId = 0x008,
  kRegVendorId = 0x00c,
  kRegDeviceFeatures = 0x010,
  kRegDeviceFeaturesSel = 0x014,
  kRegDriverFeatures = 0x020,
  kRegDriverFeaturesSel = 0x024,
  kRegQueueSel = 0x030,
  kRegQueueNumMax = 0x034,
  kRegQueueNum = 0x038,
  kRegQueueReady = 0x044,
  kRegQueueNotify = 0x050,
  kRegInterruptStatus = 0x060,
  kRegInterruptAck = 0x064,
  kRegStatus = 0x070,
  kRegQueueDescLow = 0x080,
  kRegQueueDescHigh = 0x084,
  kRegQueueDriverLow = 0x090,
  kRegQueueDriverHigh = 0x094,
  kRegQueueDeviceLow = 0x0a0,
  kRegQueueDeviceHigh = 0x0a4,
  kRegConfigGeneration = 0x0fc,
  kRegConfig = 0x100,
};

constexpr uint32_t kInterruptUsedBuffer = 1;
constexpr uint32_t kInterruptConfigChange = 2;

void SetLow(uint64_t& v, uint32_t low) { v = (v & ~0xffff'ffffULL) | low; }
void SetHigh(uint64_t& v, uint32_t high) { v = (v & 0xffff'ffffULL) | (static_cast<uint64_t>(high) << 32); }

}  // namespace

VirtioMmio::VirtioMmio(std::unique_ptr<VirtioDevice> device, IrqSink* irq, uint32_t gsi)
    : device_(std::move(device)),
      irq_(irq),
      gsi_(gsi),
      name_(absl::StrFormat("virtio-mmio-%s", device_->name())),
      queues_(device_->num_queues()) {
  absl::MutexLock lock(&mu_);
  RefreshMirrorLocked();
}

VirtioMmio::~VirtioMmio() { Quiesce(); }

void VirtioMmio::Quiesce() {
  absl::MutexLock lock(&mu_);
  if (status_ & kStatusDriverOk) device_->Reset();
  status_ &= ~kStatusDriverOk;
}

void VirtioMmio::Read(uint64_t offset, std::span<uint8_t> data) {
  absl::MutexLock lock(&mu_);
  if (offset >= kRegConfig) {
    device_->ReadConfig(offset - kRegConfig, data);
    return;
  }
  // Registers are 32 bits wide and accessed whole (4.2.2.2); other accesses read as zero.
  if (data.size() != 4 || offset % 4 != 0) {
    LOG_DEBUG("%s: %zu-byte read at %#x ignored", name_, data.size(), offset);
    StoreLe(data, 0);
    return;
  }
  StoreLe(data, ReadRegister(offset));
}

void VirtioMmio::Write(uint64_t offset, std::span<const uint8_t> data) {
  // Without mu_: a posted acknowledgement may be replayed while mu_ is held (SetPostedWriteFlush).
  if (offset == kRegInterruptAck && data.size() == 4) {
    AckInterrupt(static_cast<uint32_t>(LoadLe(data)));
    return;
  }
  absl::MutexLock lock(&mu_);
  if (offset >= kRegConfig) {
    device_->WriteConfig(offset - kRegConfig, data);
  } else if (data.size() != 4 || offset % 4 != 0) {
    LOG_DEBUG("%s: %zu-byte write at %#x ignored", name_, data.size(), offset);
    return;
  } else {
    WriteRegister(offset, static_cast<uint32_t>(LoadLe(data)));
  }
  // Before the write's exit returns: the guest's next read of the mirror must see its effect.
  RefreshMirrorLocked();
}

void VirtioMmio::RefreshMirrorLocked() {
  for (uint64_t reg : {kRegMagic, kRegVersion, kRegDeviceId, kRegVendorId, kRegDeviceFeatures, kRegQueueNumMax,
                       kRegQueueReady, kRegStatus, kRegConfigGeneration}) {
    mirror_.Store32(reg, ReadRegister(reg));
  }
  uint8_t config[kSize - kRegConfig];
  device_->ReadConfig(0, config);
  mirror_.StoreBytes(kRegConfig, config);
}

uint32_t VirtioMmio::ReadRegister(uint64_t offset) {
  switch (offset) {
    case kRegMagic:
      return kMagic;
    case kRegVersion:
      return 2;
    case kRegDeviceId:
      return device_->device_id();
    case kRegVendorId:
      return kVendorId;
    case kRegDeviceFeatures:
      return device_features_sel_ < 2 ? static_cast<uint32_t>(device_->features() >> (32 * device_features_sel_)) : 0;
    case kRegQueueNumMax:
      return SelectedQueue() != nullptr ? device_->max_queue_size() : 0;
    case kRegQueueReady: {
      Queue* q = SelectedQueue();
      return q != nullptr && q->ready ? 1 : 0;
    }
    case kRegInterruptStatus: {
      absl::MutexLock lock(&irq_mu_);
      return interrupt_status_;
    }
    case kRegStatus:
      return status_;
    case kRegConfigGeneration:
      return config_generation_;
    default:
      LOG_DEBUG("%s: read of write-only or unknown register %#x", name_, offset);
      return 0;
  }
}

VirtioMmio::Queue* VirtioMmio::SelectedQueue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

void VirtioMmio::WriteRegister(uint64_t offset, uint32_t value) {
  Queue* q = nullptr;
  switch (offset) {
    case kRegDeviceFeaturesSel:
      device_features_sel_ = value;
      return;
    case kRegDriverFeatures:
      if (status_ & kStatusFeaturesOk) return;  // frozen once accepted (3.1.1)
      if (driver_features_sel_ == 0) SetLow(driver_features_, value);
      if (driver_features_sel_ == 1) SetHigh(driver_features_, value);
      return;
    case kRegDriverFeaturesSel:
      driver_features_sel_ = value;
      return;
    case kRegQueueSel:
      queue_sel_ = value;
      return;
    case kRegQueueNotify:
      ++notifies_;
      // Only a running device has queues to notify; a notify for a queue that does not exist is dropped.
      if ((status_ & kStatusDriverOk) && (value & 0xffff) < queues_.size() && queues_[value & 0xffff].ready) {
        device_->Notify(static_cast<uint16_t>(value & 0xffff));
      }
      return;
    case kRegStatus:
      WriteStatus(value);
      return;
    default:
      break;
  }
  // Queue configuration: only for an existing queue, and only while the device is not running it.
  q = SelectedQueue();
  if (q == nullptr || (status_ & kStatusDriverOk)) {
    LOG_DEBUG("%s: write %#x to register %#x ignored (queue %u, status %#x)", name_, value, offset, queue_sel_, status_);
    return;
  }
  switch (offset) {
    case kRegQueueNum:
      if (value == 0 || value > device_->max_queue_size() || (value & (value - 1)) != 0) {
        LOG_WARN_SAMPLED("%s: queue %u size %u refused (a power of two up to %u)", name_, queue_sel_, value,
                 device_->max_queue_size());
        return;
      }
      q->size = static_cast<uint16_t>(value);
      return;
    case kRegQueueReady:
      q->ready = value == 1 && q->size != 0;
      return;
    case kRegQueueDescLow: SetLow(q->desc, value); return;
    case kRegQueueDescHigh: SetHigh(q->desc, value); return;
    case kRegQueueDriverLow: SetLow(q->driver, value); return;
    case kRegQueueDriverHigh: SetHigh(q->driver, value); return;
    case kRegQueueDeviceLow: SetLow(q->device, value); return;
    case kRegQueueDeviceHigh: SetHigh(q->device, value); return;
    default:
      LOG_DEBUG("%s: write %#x to read-only or unknown register %#x", name_, value, offset);
  }
}

void VirtioMmio::WriteStatus(uint32_t value) {
  if (value == 0) {
    ResetLocked();
    return;
  }
  const uint32_t added = value & ~status_;
  if (added & kStatusFeaturesOk) {
    // The driver may accept only offered features, and version 1 is required by this (non-legacy) transport.
    const uint64_t offered = device_->features();
    if ((driver_features_ & ~offered) != 0 || (driver_features_ & kFeatureVersion1) == 0) {
      LOG_WARN_SAMPLED("%s: driver features %#x refused (offered %#x)", name_, driver_features_, offered);
      value &= ~kStatusFeaturesOk;
    }
  }
  if ((added & kStatusDriverOk) && (value & kStatusFeaturesOk)) {
    std::vector<QueueConfig> ready;
    for (size_t i = 0; i < queues_.size(); ++i) {
      const Queue& q = queues_[i];
      if (q.ready) ready.push_back({static_cast<uint16_t>(i), q.size, q.desc, q.driver, q.device});
    }
    absl::Status st = device_->Activate(driver_features_, ready, [this] { RaiseInterrupt(kInterruptUsedBuffer); });
    if (!st.ok()) {
      LOG_ERROR("%s: %s", name_, st.ToString());
      status_ = value | kStatusNeedsReset;
      RaiseInterrupt(kInterruptConfigChange);
      return;
    }
  }
  status_ = value;
}

void VirtioMmio::ResetLocked() {
  if (status_ & kStatusDriverOk) device_->Reset();
  status_ = 0;
  driver_features_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
  for (Queue& q : queues_) q = Queue{};
  absl::MutexLock lock(&irq_mu_);
  if (interrupt_status_ != 0) irq_->SetIrq(gsi_, false);
  interrupt_status_ = 0;
  mirror_.Store32(kRegInterruptStatus, 0);
}

void VirtioMmio::RaiseInterrupt(uint32_t bits) {
  if (flush_posted_writes_) flush_posted_writes_();  // before irq_mu_: the replayed ACK takes it
  absl::MutexLock lock(&irq_mu_);
  ++interrupts_;
  const bool was_low = interrupt_status_ == 0;
  interrupt_status_ |= bits;
  mirror_.Store32(kRegInterruptStatus, interrupt_status_);  // before the line: the handler reads it at once
  if (was_low) irq_->SetIrq(gsi_, true);
}

void VirtioMmio::AckInterrupt(uint32_t bits) {
  absl::MutexLock lock(&irq_mu_);
  if (interrupt_status_ == 0) return;
  interrupt_status_ &= ~bits;
  mirror_.Store32(kRegInterruptStatus, interrupt_status_);
  if (interrupt_status_ == 0) irq_->SetIrq(gsi_, false);
}

uint64_t VirtioMmio::notifies() const {
  absl::MutexLock lock(&mu_);
  return notifies_;
}

uint64_t VirtioMmio::interrupts() const {
  absl::MutexLock lock(&irq_mu_);
  return interrupts_;
}

}  // namespace coalesce::virtio
