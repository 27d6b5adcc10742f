#include "hypervisor/machine/lease_renewer.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "hypervisor/base/log.h"

namespace coalesce {
namespace {

// Renewing more often than this would only load the agents: a lease that short is not a useful lease.
constexpr absl::Duration kShortestPeriod = absl::Milliseconds(100);

absl::Duration PeriodFor(absl::Duration granted) { return std::max(granted / 3, kShortestPeriod); }

}  // namespace

LeaseRenewer::LeaseRenewer(uint32_t lease_seconds) : lease_seconds_(lease_seconds) {
  thread_ = std::thread([this] { Loop(); });
}

LeaseRenewer::~LeaseRenewer() { Stop(); }

void LeaseRenewer::Add(uint16_t node, EdgeAgentClient* agent, std::string vm_id, absl::Duration granted) {
  absl::MutexLock lock(&mu_);
  const absl::Duration period = PeriodFor(granted);
  leases_.push_back(Lease{node, agent, std::move(vm_id), period, absl::Now() + period});
}

void LeaseRenewer::Remove(uint16_t node) {
  absl::MutexLock lock(&mu_);
  leases_.erase(std::remove_if(leases_.begin(), leases_.end(), [node](const Lease& l) { return l.node == node; }),
                leases_.end());
}

void LeaseRenewer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

uint64_t LeaseRenewer::renewals() const {
  absl::MutexLock lock(&mu_);
  return renewals_;
}

void LeaseRenewer::Loop() {
  while (true) {
    std::vector<Lease> due;
    {
      absl::MutexLock lock(&mu_);
      absl::Time wake = absl::Now() + absl::Seconds(1);
      for (const Lease& l : leases_) wake = std::min(wake, l.next);
      mu_.AwaitWithDeadline(absl::Condition(&stopping_), wake);
      if (stopping_) return;
      const absl::Time now = absl::Now();
      for (const Lease& l : leases_) {
        if (l.next <= now) due.push_back(l);
      }
    }
    for (const Lease& l : due) {
      absl::StatusOr<pb::VmStatus> renewed = l.agent->RenewLease(l.vm_id, lease_seconds_);
      absl::MutexLock lock(&mu_);
      auto it = std::find_if(leases_.begin(), leases_.end(), [&l](const Lease& x) { return x.node == l.node; });
      if (it == leases_.end()) continue;  // removed meanwhile: the node left
      if (renewed.ok()) {
        ++renewals_;
        it->period = PeriodFor(absl::Milliseconds(renewed->lease_ms_left()));
        it->next = absl::Now() + it->period;
      } else if (renewed.status().code() == absl::StatusCode::kFailedPrecondition ||
                 renewed.status().code() == absl::StatusCode::kNotFound) {
        // The agent ended it: the runtime's departure brings the vCPUs home; nothing to renew any more.
        LOG_WARN("edge node %u: lease ended: %s", l.node, std::string(renewed.status().message()));
        leases_.erase(it);
      } else {
        // Unreachable for now: try again sooner, while the lease still runs.
        LOG_WARN("edge node %u: renewing its lease: %s; trying again", l.node, std::string(renewed.status().message()));
        it->next = absl::Now() + it->period / 2;
      }
    }
  }
}

}  // namespace coalesce
