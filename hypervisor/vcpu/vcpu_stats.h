// Per-vCPU counters, written by the vCPU thread, read by anyone (relaxed atomics).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/kvm/vcpu_exit.h"

namespace coalesce {

class VcpuStats final {
 public:
  void CountExit(size_t kind) { exits_[kind].fetch_add(1, std::memory_order_relaxed); }
  void CountInjection() { injections_.fetch_add(1, std::memory_order_relaxed); }
  // An interrupt the guest ended through PV EOI, without an EOI write (and its exit).
  void CountPvEoi() { pv_eois_.fetch_add(1, std::memory_order_relaxed); }
  // A halt that ended (an interrupt arrived); `caught_by_poll`: within the halt-poll window, without a sleep.
  void CountHalt(bool caught_by_poll) {
    halts_.fetch_add(1, std::memory_order_relaxed);
    if (caught_by_poll) halts_polled_.fetch_add(1, std::memory_order_relaxed);
  }
  void CountEmulation(const std::string& mnemonic, uint64_t n = 1) {
    absl::MutexLock lock(&mu_);
    emulations_[mnemonic] += n;
  }
  // Guest RIP where an asynchronous kick found the vCPU: a statistical profile of guest time.
  void SampleRip(uint64_t rip) {
    absl::MutexLock lock(&mu_);
    rip_samples_[rip]++;
  }
  [[nodiscard]] std::map<uint64_t, uint64_t> rip_samples() const {
    absl::MutexLock lock(&mu_);
    return rip_samples_;
  }
  [[nodiscard]] uint64_t exits(size_t kind) const { return exits_[kind].load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t injections() const { return injections_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t pv_eois() const { return pv_eois_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t halts() const { return halts_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t halts_polled() const { return halts_polled_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::map<std::string, uint64_t> emulations() const {
    absl::MutexLock lock(&mu_);
    return emulations_;
  }

 private:
  std::array<std::atomic<uint64_t>, kExitKinds> exits_{};
  std::atomic<uint64_t> injections_{0};
  std::atomic<uint64_t> pv_eois_{0};
  std::atomic<uint64_t> halts_{0};
  std::atomic<uint64_t> halts_polled_{0};
  mutable absl::Mutex mu_;
  std::map<std::string, uint64_t> emulations_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, uint64_t> rip_samples_ ABSL_GUARDED_BY(mu_);
};

}  // namespace coalesce
