// Shared fixtures for the irq unit tests: a few real LocalApics on a real LocalInterruptRouter and
// TimerService, with kick counters, and 32-bit MMIO helpers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "hypervisor/base/timer_service.h"
#include "hypervisor/bus/bus_device.h"
#include "hypervisor/irq/apic_registers.h"
#include "hypervisor/irq/local_apic.h"
#include "hypervisor/irq/local_interrupt_router.h"

namespace coalesce::testing {

inline void Write32(LocalApic& apic, uint32_t offset, uint32_t value) {
  uint8_t bytes[4];
  StoreLe(bytes, value);
  apic.MmioWrite(offset, bytes);
}

inline uint32_t Read32(LocalApic& apic, uint32_t offset) {
  uint8_t bytes[4];
  apic.MmioRead(offset, bytes);
  return static_cast<uint32_t>(LoadLe(bytes));
}

inline void Write32(BusDevice& dev, uint64_t offset, uint32_t value) {
  uint8_t bytes[4];
  StoreLe(bytes, value);
  dev.Write(offset, bytes);
}

inline uint32_t Read32(BusDevice& dev, uint64_t offset) {
  uint8_t bytes[4];
  dev.Read(offset, bytes);
  return static_cast<uint32_t>(LoadLe(bytes));
}

// Software-enables an APIC with spurious vector 0xff, as every OS does first.
inline void Enable(LocalApic& apic) { Write32(apic, apic::kSvr, apic::kSvrSoftwareEnable | 0xff); }

// Whether `vector` is set in the IRR as the guest reads it.
inline bool IrrHas(LocalApic& apic, uint8_t vector) {
  return (Read32(apic, apic::kIrrBase + 0x10 * (vector / 32)) >> (vector % 32)) & 1;
}
inline bool IsrHas(LocalApic& apic, uint8_t vector) {
  return (Read32(apic, apic::kIsrBase + 0x10 * (vector / 32)) >> (vector % 32)) & 1;
}
inline bool TmrHas(LocalApic& apic, uint8_t vector) {
  return (Read32(apic, apic::kTmrBase + 0x10 * (vector / 32)) >> (vector % 32)) & 1;
}

// Sends an IPI the way a guest does: ICR high (destination) then ICR low (which sends).
inline void SendIpi(LocalApic& from, uint8_t destination, uint32_t icr_low) {
  Write32(from, apic::kIcrHigh, uint32_t{destination} << 24);
  Write32(from, apic::kIcrLow, icr_low);
}

// ICR low-word builders.
inline constexpr uint32_t kIcrFixed = 0u << 8;
inline constexpr uint32_t kIcrLowest = 1u << 8;
inline constexpr uint32_t kIcrNmi = 4u << 8;
inline constexpr uint32_t kIcrInit = 5u << 8;
inline constexpr uint32_t kIcrStartup = 6u << 8;
inline constexpr uint32_t kIcrLogical = 1u << 11;
inline constexpr uint32_t kIcrAssert = 1u << 14;
inline constexpr uint32_t kIcrLevel = 1u << 15;
inline constexpr uint32_t kIcrSelf = 1u << 18;
inline constexpr uint32_t kIcrAllIncludingSelf = 2u << 18;
inline constexpr uint32_t kIcrAllExcludingSelf = 3u << 18;

// N local APICs with ids 0..N-1 (APIC 0 is the BSP) on one router and one timer service.
class ApicSystem {
 public:
  explicit ApicSystem(int count) : kicks_(static_cast<size_t>(count)) {
    for (int i = 0; i < count; ++i) {
      auto* counter = &kicks_[static_cast<size_t>(i)];
      apics_.push_back(std::make_unique<LocalApic>(static_cast<uint32_t>(i), i == 0, &router_, &timers_,
                                                   [counter] { counter->fetch_add(1); }));
      if (!router_.AddApic(apics_.back().get()).ok()) throw std::runtime_error("AddApic failed");
    }
  }
  LocalApic& apic(int i) { return *apics_[static_cast<size_t>(i)]; }
  int kicks(int i) const { return kicks_[static_cast<size_t>(i)].load(); }
  LocalInterruptRouter& router() { return router_; }
  TimerService& timers() { return timers_; }

 private:
  // Declaration order = destruction order reversed: APICs (which cancel their timers) go before the
  // timer service and the router.
  TimerService timers_;
  LocalInterruptRouter router_;
  std::vector<std::atomic<int>> kicks_;
  std::vector<std::unique_ptr<LocalApic>> apics_;
};

// Polls `condition` until it holds or `timeout` passes. For asynchronous (timer) effects only.
inline bool WaitFor(const std::function<bool()>& condition,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(2000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return condition();
}

}  // namespace coalesce::testing
