// How long a halted vCPU's thread spins for a wake-up before it sleeps: adaptive halt polling in user space.
//
// KVM polls for an interrupt inside the kernel before a halted vCPU sleeps (halt_poll_ns, 200 us by default): an
// interrupt that arrives a few microseconds after the HLT then costs no scheduler wake-up. With the local APIC in
// user space (interrupts must reach vCPUs on other hosts) every HLT exits to us, and a thread that went straight
// to sleep paid that wake-up on each disk completion, IPI or short timer. The window adapts as KVM's does: it
// grows (from 10 us, doubling, up to the maximum) after a halt that the poll missed but that ended within the
// maximum, and drops to zero after a halt longer than the maximum, so a vCPU idle for long does not spin.
#pragma once

#include "absl/time/time.h"

namespace coalesce {

class HaltPollWindow final {
 public:
  // KVM's default maximum (halt_poll_ns) and first window (halt_poll_ns_grow_start).
  static constexpr absl::Duration kDefaultMax = absl::Microseconds(200);
  static constexpr absl::Duration kGrowStart = absl::Microseconds(10);

  // `max` zero turns polling off.
  explicit HaltPollWindow(absl::Duration max = kDefaultMax) : max_(max) {}

  // How long to poll at the next halt.
  [[nodiscard]] absl::Duration window() const { return window_; }
  // Records how long a halt lasted, from the HLT to the wake-up, and adapts the window.
  void Record(absl::Duration halted);

 private:
  absl::Duration max_;
  absl::Duration window_ = absl::ZeroDuration();
};

}  // namespace coalesce
