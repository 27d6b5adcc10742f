#include "hypervisor/vcpu/pause_gate.h"

#include <thread>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"

namespace coalesce {

absl::StatusOr<uint32_t> HoldVcpus(RunControl& run_control, const std::vector<std::unique_ptr<Vcpu>>& vcpus,
                                   TimerService* timers, absl::Duration timeout) {
  run_control.SetPaused(true);
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const Vcpu* running = nullptr;
    for (const auto& v : vcpus) {
      if (v && !v->held()) {
        // A kick that lands between the thread's check of the flag and its entry into KVM_RUN is lost until the
        // next exit: kick again each round, as Vcpu::Park does.
        v->Kick();
        if (running == nullptr) running = v.get();
      }
    }
    if (running == nullptr) break;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrFormat("vCPU %u did not stop within %s", running->id(),
                                                         absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  uint32_t held = 0;
  for (const auto& v : vcpus) {
    if (!v || !v->at_pause_gate()) continue;
    ++held;
    if (absl::Status st = v->fd().NotifyGuestPaused(); !st.ok()) LOG_WARN("vcpu%u: %s", v->id(), st.ToString());
  }
  if (timers != nullptr) timers->Freeze();
  return held;
}

uint32_t ReleaseVcpus(RunControl& run_control, const std::vector<std::unique_ptr<Vcpu>>& vcpus, TimerService* timers) {
  if (timers != nullptr) timers->Thaw();
  uint32_t held = 0;
  for (const auto& v : vcpus) held += v && v->at_pause_gate() ? 1 : 0;
  run_control.SetPaused(false);
  return held;
}

}  // namespace coalesce
