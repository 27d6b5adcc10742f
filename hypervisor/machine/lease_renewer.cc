#include "hypervisor/machine/lease_renewer.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/thread_name.h"

namespace coalesce {
namespace {

// Renewing more often than this would only load the agents: a lease that short is not a useful lease.
constexpr absl::Duration kShortestPeriod = absl::Milliseconds(100);

absl::Duration PeriodFor(absl::Duration granted) { return std::max(granted / 3, kShortestPeriod); }

}  // namespace

LeaseRenewer::LeaseRenewer(uint32_t lease_seconds) : lease_seconds_(lease_seconds) {
  thread_ = StartNamedThread("lease-renewer", [this] { Loop(); });
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
      for (const Lease& l : leases_) {
        if (!l.in_flight) wake = std::min(wake, l.next);
      }
      // Wakes early for a stop, or a call that ended (its thread to join, its lease due again later).
      mu_.AwaitWithDeadline(absl::Condition(this, &LeaseRenewer::StoppingOrCallEnded), wake);
      if (stopping_) break;
      call_ended_ = false;
      const absl::Time now = absl::Now();
      for (Lease& l : leases_) {
        if (!l.in_flight && l.next <= now) {
          l.in_flight = true;
          due.push_back(l);
        }
      }
    }
    ReapCalls(/*all=*/false);
    for (const Lease& l : due) {
      auto done = std::make_shared<std::atomic<bool>>(false);
      calls_.push_back(Call{std::thread([this, l, done] {
                              Renew(l);
                              done->store(true);
                            }),
                            done});
    }
  }
  ReapCalls(/*all=*/true);
}

void LeaseRenewer::ReapCalls(bool all) {
  for (auto it = calls_.begin(); it != calls_.end();) {
    if (all || it->done->load()) {
      it->thread.join();
      it = calls_.erase(it);
    } else {
      ++it;
    }
  }
}

void LeaseRenewer::Renew(const Lease& l) {
  absl::StatusOr<pb::VmStatus> renewed = l.agent->RenewLease(l.vm_id, lease_seconds_);
  absl::MutexLock lock(&mu_);
  call_ended_ = true;
  auto it = std::find_if(leases_.begin(), leases_.end(), [&l](const Lease& x) { return x.node == l.node; });
  if (it == leases_.end()) return;  // removed meanwhile: the node left
  it->in_flight = false;
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

}  // namespace coalesce
