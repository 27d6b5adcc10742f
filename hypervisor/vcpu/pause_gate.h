// Holding and releasing one node's vCPUs for a paused guest (virsh suspend / resume, `coalesce ctl suspend`):
// the one way the home and the edge runtimes pause their vCPUs. Holding sets the node's pause flag, kicks every
// vCPU until each waits at its gate (or has no thread), and tells each held guest CPU through kvmclock that it
// was stopped, so that the guest's soft-lockup watchdog does not count the pause as a hang (KVM_KVMCLOCK_CTRL,
// as QEMU does when it stops a VM), and freezes the node's device timers (LAPIC timers; at home also the PIT,
// RTC and ACPI PM timer): a paused guest's timers do not tick, as QEMU stops its virtual clock, and a paused node
// does no timer work. Releasing thaws them (what came due meanwhile fires once; periodic timers skip the periods
// they missed) and clears the flag: every vCPU goes on where it was.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hypervisor/base/timer_service.h"
#include "hypervisor/vcpu/run_control.h"
#include "hypervisor/vcpu/vcpu.h"

namespace coalesce {

// Returns how many vCPUs wait at their gate (those with a thread on this node). DeadlineExceeded naming the
// first vCPU still running after `timeout`; the flag stays set (the caller releases).
// `timers` (may be null) are frozen once every vCPU is held.
absl::StatusOr<uint32_t> HoldVcpus(RunControl& run_control, const std::vector<std::unique_ptr<Vcpu>>& vcpus,
                                   TimerService* timers, absl::Duration timeout);
// Returns how many vCPUs were waiting at their gate. `timers` (may be null) are thawed first.
uint32_t ReleaseVcpus(RunControl& run_control, const std::vector<std::unique_ptr<Vcpu>>& vcpus, TimerService* timers);

}  // namespace coalesce
