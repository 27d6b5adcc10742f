// The home node's side of a coalesced VM: the DSM home over guest RAM (node 0), the edge agents asked to
// host vCPUs (each remote runtime becomes node 1, 2, ...), the mesh between remote nodes, and the node
// messages the home serves: forwarded I/O on the device bus, interrupts relayed between nodes, EOIs for the
// IOAPIC, and stop notices both ways.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "edge_monitor/edge_agent_client.h"
#include "edge_monitor/guest_ranges.h"
#include "hypervisor/machine/edge_placement.h"
#include "hypervisor/machine/lease_renewer.h"
#include "hypervisor/memory/guest_memory.h"
#include "vcpu_remote/node_link.h"

namespace coalesce {

struct CoalescenceConfig {
  std::vector<EdgePlacementSpec> edges;
  uint32_t vcpu_count = 0;
  std::string data_plane_host = "127.0.0.1";  // where remote nodes reach the home's data plane
  uint16_t data_plane_port = 0;               // 0: any free port
  std::string data_plane_advertise;           // host:port sent to edges instead (NAT, port forward, relay)
  std::vector<GuestRange> home_only_memory;   // never sent over the data plane (checked on every frame)
  double max_edge_load = 0;                   // the user's policy, checked by each agent (0: none)
  uint32_t lease_seconds = 0;                 // the lease asked of each agent (0: its longest); renewed by the home
  dsm::LinkEmulation link;                    // emulated on every link, both ways: home shapes what it sends, edges theirs
  int64_t tsc_offset = 0;                     // host TSC - guest TSC at home
  std::string cpu_model = "baseline";         // sent to every edge, so that all vCPUs show one CPU
  ControlPlaneSecurity control_plane;
  // At most this much guest RAM stays at home; the oldest pages beyond it are spilled to the memory edges
  // (EdgePlacementSpec::memory_bytes). 0: no allowance.
  uint64_t home_memory_allowance = 0;
  // Per edge (as `edges`): the boot RAM its guest NUMA domain names (BootMemoryShares); the DSM spills those
  // pages to that memory edge first. Empty: no preference.
  std::vector<MemoryShare> boot_memory_shares;
};

// A memory edge's lease is refused when the home host could not hold what that edge would hand back on leaving
// (MemAvailable below `lent_bytes`): ResourceExhausted naming the edge.
absl::Status CheckHomeCanTakeBack(uint64_t lent_bytes, const std::string& agent_address);

class CoalescenceHome final {
 public:
  struct Handlers {
    // Serves a remote vCPU's access; fills `data` for reads.
    std::function<void(const node_msg::IoRequest&, std::vector<uint8_t>* data)> on_io;
    // An interrupt a remote node forwarded: delivered here and relayed on (ForwardingInterruptRouter::
    // DeliverFromNode); returns how many nodes it was relayed to.
    std::function<size_t(uint16_t from, const ApicMessage&)> deliver_from_node;
    std::function<void(uint8_t vector)> on_eoi;
    // A vCPU moving (VcpuDetached, VcpuMigrate, VcpuArrived) or a node leaving (Leaving); on the receiver thread.
    std::function<void(uint16_t from, const node_msg::NodeMessage&)> on_move;
    std::function<void(int status, std::string reason)> on_stop;
    // An edge's answer to a pause or resume (VmPause::OnAnswer); on the receiver thread.
    std::function<void(uint16_t from, const node_msg::PauseDone&)> on_pause_done;
  };

  // Starts the data plane and hosts every edge's vCPUs; returns once all remote nodes are connected to each
  // other and ready. Errors name the edge that failed; nodes already started are stopped again.
  static absl::StatusOr<std::unique_ptr<CoalescenceHome>> Start(const CoalescenceConfig& config, GuestMemory& memory,
                                                                Handlers handlers);
  ~CoalescenceHome();

  void SendInterrupt(uint16_t node, const ApicMessage& msg);
  absl::Status Send(uint16_t node, const node_msg::NodeMessage& message) { return link_->Send(node, message); }
  // Edge nodes started so far (node k is edge k-1 of EdgeAddresses; those that left included).
  [[nodiscard]] size_t edge_count() const;
  [[nodiscard]] std::vector<std::string> EdgeAddresses() const;
  // Leases `edge.vcpus`, which run elsewhere now, on a new edge while the guest runs (`coalesce ctl attach`): its
  // agent starts a runtime as the next node, which joins the mesh with them idle. Returns the node id; the caller
  // moves the vCPUs there. Errors name the edge (unreachable, refused, never joined).
  absl::StatusOr<uint16_t> AttachEdge(const EdgePlacementSpec& edge);
  // Tells every remote node that the VM stops and wakes forwarded-I/O waiters. Any thread; idempotent.
  void NotifyStop(int status, const std::string& reason);
  // Node `node` has no vCPUs any more: told to leave (`Leaving`: it hands its pages back and exits), and left
  // alone from now on (no stop notice, no StopVm at shutdown).
  void ReleaseNode(uint16_t node);
  [[nodiscard]] bool Released(uint16_t node);
  // Asks each agent to stop its runtime and closes the data plane. Not from a DSM thread (it joins them).
  void Shutdown();
  [[nodiscard]] std::string StatsReport() const;
  [[nodiscard]] uint64_t lease_renewals() const { return renewer_ ? renewer_->renewals() : 0; }
  // The round trip to each remote node over its data-plane connection (link emulation included): the median
  // of `probes` echo probes, each answered by the node's receiver thread. Entry i is node i; entry 0 (home)
  // is zero, and so is a node that left. DeadlineExceeded naming the node if a probe is not answered within 5 s.
  absl::StatusOr<std::vector<absl::Duration>> MeasureRoundTrips(int probes);
  // The emulated link for what the home sends to `node` from now on (`coalesce ctl link`).
  absl::Status SetLink(uint16_t node, const dsm::LinkEmulation& link) { return link_->dsm().SetLinkEmulation(node, link); }
  // The home's DSM node (devices pin request pages in it: DsmDmaGuard).
  [[nodiscard]] dsm::DsmNode& dsm() { return link_->dsm(); }

 private:
  CoalescenceHome(const CoalescenceConfig& config, Handlers handlers) : config_(config), handlers_(std::move(handlers)) {}
  absl::Status HostEdges();
  // Asks `edge`'s agent for a runtime as node `node` (vCPUs idle until moved there if `vcpus_arrive`).
  absl::Status StartRuntime(const EdgePlacementSpec& edge, uint16_t node, bool vcpus_arrive);
  void OfferMemory(const EdgePlacementSpec& edge, uint16_t node, MemoryShare share);
  // Waits for nodes first..last to say hello, introduces them to the nodes in the VM and waits for the mesh.
  absl::Status JoinNodes(uint16_t first, uint16_t last);
  std::vector<EdgeAgentClient*> Agents() const;
  void OnMessage(uint16_t from, node_msg::NodeMessage message);

  CoalescenceConfig config_;
  Handlers handlers_;
  std::string vm_id_;
  // This run's data-plane secret: made at Start, handed to each edge inside HostVcpus.
  std::optional<dsm::DataPlaneSecret> secret_;
  std::unique_ptr<NodeLink> link_;
  std::atomic<uint64_t> io_served_{0};        // remote vCPUs' accesses served on the bus
  std::atomic<uint64_t> interrupts_relayed_{0};
  uint64_t memory_bytes_ = 0;          // the guest's boot RAM
  uint64_t hotplug_memory_bytes_ = 0;  // and its hotplug area (GuestMemory): every node maps both
  absl::Mutex attach_mu_;  // one attach at a time
  mutable absl::Mutex nodes_mu_;  // a leaf
  std::vector<std::unique_ptr<EdgeAgentClient>> agents_ ABSL_GUARDED_BY(nodes_mu_);  // node k: agents_[k-1]
  std::vector<EdgePlacementSpec> edges_ ABSL_GUARDED_BY(nodes_mu_);
  // Declared after agents_: destroyed (its thread joined) before the clients it calls.
  std::unique_ptr<LeaseRenewer> renewer_;
  absl::Mutex probe_mu_;  // one round-trip measurement at a time (the link monitor and `ctl status`)
  absl::Mutex mu_;
  std::vector<node_msg::PeerInfo> hellos_ ABSL_GUARDED_BY(mu_);
  std::vector<uint16_t> mesh_ready_ ABSL_GUARDED_BY(mu_);  // nodes connected to every peer named to them
  uint64_t echo_sent_ ABSL_GUARDED_BY(mu_) = 0;      // token of the last probe sent
  uint64_t echo_answered_ ABSL_GUARDED_BY(mu_) = 0;  // token of the last probe answered
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<bool> released_ ABSL_GUARDED_BY(mu_);  // by node id: left the VM
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce
