// An IrqSink that remembers every level change, for device tests. Thread-safe: timer callbacks call it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "hypervisor/irq/irq_sink.h"

namespace coalesce {

class RecordingIrqSink final : public IrqSink {
 public:
  void SetIrq(uint32_t irq, bool level) override {
    absl::MutexLock lock(&mu_);
    events_.emplace_back(irq, level);
    if (level && !levels_[irq]) ++rising_edges_[irq];
    levels_[irq] = level;
  }
  bool level(uint32_t irq) {
    absl::MutexLock lock(&mu_);
    return levels_[irq];
  }
  uint64_t rising_edges(uint32_t irq) {
    absl::MutexLock lock(&mu_);
    return rising_edges_[irq];
  }
  std::vector<std::pair<uint32_t, bool>> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  // Polls until `pred()` holds or `timeout` passes; returns whether it held. For waiting on timer-driven
  // devices without a fixed sleep.
  template <typename Pred>
  static bool WaitFor(Pred pred, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<uint32_t, bool>> events_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, bool> levels_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, uint64_t> rising_edges_ ABSL_GUARDED_BY(mu_);
};

// Byte-wide port helpers, the way a guest's inb/outb reach a device (offsets from its base).
template <typename Device>
uint8_t Inb(Device& dev, uint64_t offset) {
  uint8_t v = 0;
  dev.Read(offset, {&v, 1});
  return v;
}
template <typename Device>
void Outb(Device& dev, uint64_t offset, uint8_t value) {
  dev.Write(offset, {&value, 1});
}
template <typename Device>
uint16_t Inw(Device& dev, uint64_t offset) {
  uint8_t v[2] = {};
  dev.Read(offset, v);
  return static_cast<uint16_t>(v[0] | (v[1] << 8));
}
template <typename Device>
void Outw(Device& dev, uint64_t offset, uint16_t value) {
  uint8_t v[2] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8)};
  dev.Write(offset, v);
}
template <typename Device>
uint32_t Inl(Device& dev, uint64_t offset) {
  uint8_t v[4] = {};
  dev.Read(offset, v);
  return static_cast<uint32_t>(v[0] | (v[1] << 8) | (v[2] << 16) | (static_cast<uint32_t>(v[3]) << 24));
}

}  // namespace coalesce
