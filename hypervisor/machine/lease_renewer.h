// Keeps a coalesced VM's edge leases alive: each edge agent hosts its vCPUs for a lease it grants
// (protos/coalesce/edge_agent.proto) and the home renews every lease at a third of what was granted, so two
// renewals in a row may fail (a slow or lost call, an agent restarting its network) before the lease ends.
// A lease that has ended (the agent says so: expired or revoked) is renewed no more: the agent sends that node's
// runtime away, and the runtime's departure brings its vCPUs home (docs/COALESCENCE.md, "Leases").
//
// Threads: one scheduling thread, and one short-lived thread per renewal call in flight, so that a slow or
// unreachable agent (its call waits up to the client's RPC timeout) delays no other edge's renewal. Add/Remove/
// Stop from any thread. Lock: mu_ (a leaf; no call is made under it).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "edge_monitor/edge_agent_client.h"

namespace coalesce {

class LeaseRenewer final {
 public:
  // `lease_seconds`: what each renewal asks for (profile policies.lease_seconds; 0: each agent's longest).
  explicit LeaseRenewer(uint32_t lease_seconds);
  ~LeaseRenewer();  // Stop()
  LeaseRenewer(const LeaseRenewer&) = delete;
  LeaseRenewer& operator=(const LeaseRenewer&) = delete;

  // Node `node`'s runtime, `vm_id` on `agent` (which must outlive this renewer or its Remove), was granted
  // `granted` just now (HostVcpus' lease_ms_left).
  void Add(uint16_t node, EdgeAgentClient* agent, std::string vm_id, absl::Duration granted);
  // The node left the VM: its lease is not renewed any more.
  void Remove(uint16_t node);
  // Ends the thread (renewals in flight finish first, within the client's RPC timeout).
  void Stop();

  uint64_t renewals() const;  // successful renewals so far (`ctl status`)

 private:
  struct Lease {
    uint16_t node;
    EdgeAgentClient* agent;
    std::string vm_id;
    absl::Duration period;  // a third of the last grant
    absl::Time next;
    bool in_flight = false;  // a renewal call is under way
  };
  struct Call {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void Loop();
  // One renewal call and what it decides; on a call thread of its own.
  void Renew(const Lease& lease);
  // Joins the call threads that have finished (all of them with `all`).
  void ReapCalls(bool all);
  bool StoppingOrCallEnded() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || call_ended_; }

  const uint32_t lease_seconds_;
  mutable absl::Mutex mu_;
  std::vector<Lease> leases_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool call_ended_ ABSL_GUARDED_BY(mu_) = false;  // a renewal call finished since the loop last looked
  uint64_t renewals_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Call> calls_;  // the scheduling thread's alone (and Stop's, after joining it)
  std::thread thread_;
};

}  // namespace coalesce
