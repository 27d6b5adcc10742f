// What a virtio device model implements behind a transport (virtio 1.2, section 2). The transport
// (VirtioMmio) owns the registers the driver negotiates through; the device owns the queues' processing once
// the driver sets DRIVER_OK, and tells the transport when it has put buffers in a used ring.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace coalesce::virtio {

// Feature bits of the virtio core (section 6).
inline constexpr uint64_t kFeatureIndirectDesc = 1ULL << 28;
inline constexpr uint64_t kFeatureEventIdx = 1ULL << 29;
inline constexpr uint64_t kFeatureVersion1 = 1ULL << 32;
inline constexpr uint64_t kFeatureAccessPlatform = 1ULL << 33;
inline constexpr uint64_t kFeatureRingPacked = 1ULL << 34;

// Device status bits (section 2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// Device ids (section 5).
inline constexpr uint32_t kDeviceIdBlock = 2;

// One split virtqueue as the driver configured it: guest-physical addresses of its three areas.
struct QueueConfig {
  uint16_t index = 0;
  uint16_t size = 0;
  uint64_t desc = 0;    // descriptor table
  uint64_t driver = 0;  // available ring
  uint64_t device = 0;  // used ring
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  [[nodiscard]] virtual uint32_t device_id() const = 0;
  [[nodiscard]] virtual std::string_view name() const = 0;
  // Features offered to the driver.
  [[nodiscard]] virtual uint64_t features() const = 0;
  [[nodiscard]] virtual uint16_t num_queues() const = 0;
  [[nodiscard]] virtual uint16_t max_queue_size() const = 0;
  // Device-specific configuration space (offset from its start).
  virtual void ReadConfig(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void WriteConfig(uint64_t offset, std::span<const uint8_t> data) = 0;
  // The driver set DRIVER_OK: start processing `queues` (the ready ones) with the negotiated features.
  // `used_buffer` tells the transport (any thread) that used rings advanced. An error marks the device
  // NEEDS_RESET.
  virtual absl::Status Activate(uint64_t driver_features, const std::vector<QueueConfig>& queues,
                                std::function<void()> used_buffer) = 0;
  // The driver notified queue `queue` (QueueNotify).
  virtual void Notify(uint16_t queue) = 0;
  // An eventfd that does what Notify(queue) does when signalled, so the hypervisor can have KVM signal it on the
  // guest's QueueNotify write without an exit (KVM_IOEVENTFD); -1 if there is none.
  [[nodiscard]] virtual int notify_eventfd(uint16_t queue) const { (void)queue; return -1; }
  // Looks for used buffers the back end published that no used_buffer call announced yet and, if it finds some,
  // makes that call itself; true if it did. For a halted vCPU that polls (any thread, no lock held; cheap when
  // there is nothing): a device whose completions reach it through another thread's wake-up can let the poller
  // see them first. The default finds nothing.
  virtual bool PollUsed() { return false; }
  // The driver reset the device (status 0): stop every queue; no used_buffer call after this returns.
  virtual void Reset() = 0;
};

}  // namespace coalesce::virtio
