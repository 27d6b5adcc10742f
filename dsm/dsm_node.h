// A DSM node: page-granular, sequentially consistent shared memory between processes on different hosts.
//
// The node takes an existing memfd and its MAP_SHARED mapping (for a VM: GuestMemory's memfd, which is also the
// KVM memslot), or creates its own, and makes that memory coherent with the same memory of its peers. Accesses are
// ordinary loads and stores, by host threads or by KVM on behalf of a guest; the node's service threads resolve
// their faults. Nothing outside dsm/ needs to know that userfaultfd is underneath.
//
// Threads: one fault thread (userfaultfd events, request deadlines), one liveness thread (heartbeats and silent
// links: kept off the fault thread, so a node busy resolving faults, or a fault thread blocked on a slow step,
// still shows it is alive), one acceptor, and a receiver and a sender per peer connection. Protocol state lives in a ProtocolEngine behind one mutex; network writes happen outside it.
//
// Failure: every wait has a deadline (request_timeout for page requests, peer_timeout for a silent link); a lost,
// silent or misbehaving peer ends in one call of on_error with a Status naming the peer and what was waited for.
// The node cannot stay coherent after that: the owner must stop its accessors (vCPUs) and destroy the node.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "dsm/directory_placement.h"
#include "dsm/dsm_stats.h"
#include "dsm/peer_channel.h"
#include "dsm/link_emulation.h"
#include "dsm/memory_allowance.h"
#include "dsm/protocol_engine.h"
#include "dsm/resident_pages.h"
#include "hypervisor/base/mapping.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce::dsm {

class Transport;
class UffdPageMemory;

struct DsmPeer {
  NodeId id = 0;
  std::string host;
  uint16_t port = 0;
};

struct DsmNodeConfig {
  NodeId self = 0;
  NodeId home = 0;  // owns every page at start; the others start with every page Invalid
  std::string listen_address = "0.0.0.0";
  uint16_t listen_port = 0;  // 0: any free port, see DsmNode::port()
  // Empty: the home manages every page's directory entry. Otherwise pages are hashed over these nodes (a fixed
  // membership: no join or leave).
  std::vector<NodeId> hash_managers;
  LinkEmulation link;  // off by default
  // Every node of the VM holds the same secret: the data plane is then encrypted and authenticated (AES-256-GCM,
  // keys per connection, replay protection; dsm/frame_cipher.h). Unset: plaintext, for tests and benchmarks.
  std::optional<DataPlaneSecret> data_plane_secret;
  // Pages (memfd page indexes, [first, end)) whose contents must never leave this node: the home's view of the
  // guest's --home-only-memory. Checked on every outgoing message.
  std::vector<PageSpan> never_send;
  // An open /dev/userfaultfd to create the node's userfaultfd through (USERFAULTFD_IOC_NEW), or -1 for
  // userfaultfd(2). Not owned. A process without CAP_SYS_PTRACE (a runtime in its own user namespace) gets a
  // userfaultfd that also catches KVM's kernel-mode accesses only this way.
  int userfaultfd_device = -1;
  absl::Duration request_timeout = absl::Seconds(5);
  absl::Duration peer_timeout = absl::Seconds(3);
  absl::Duration heartbeat_interval = absl::Milliseconds(200);
  absl::Duration connect_timeout = absl::Seconds(10);
  // Print counters, latency histograms and the hottest pages to stderr when the node stops (also turned on by the
  // environment variable COALESCE_DSM_STATS=1).
  bool print_stats_at_exit = false;
  // The first fatal error (peer lost, timeout, protocol violation, local failure). Runs on a DSM thread: it may
  // signal or exit, but must not call Stop() or destroy the node itself (Stop joins that thread).
  std::function<void(const absl::Status&)> on_error;
  // Application messages (SendUserMessage, either lane). Runs on a receiver thread.
  std::function<void(NodeId from, std::vector<uint8_t> payload)> on_user_message;
};

class DsmNode final {
 public:
  // Serves `size` bytes at `base`, the MAP_SHARED mapping of `memfd` from offset 0; both must outlive the node.
  // Starts the service threads and the listener. A node other than the home drops every page of the memfd: its
  // contents are the home's to give.
  static absl::StatusOr<std::unique_ptr<DsmNode>> Create(const DsmNodeConfig& config, int memfd, uint8_t* base,
                                                         uint64_t size);
  // Same, on a memfd and mapping of its own.
  static absl::StatusOr<std::unique_ptr<DsmNode>> CreateWithOwnMemory(const DsmNodeConfig& config, uint64_t size);
  ~DsmNode();
  DsmNode(const DsmNode&) = delete;
  DsmNode& operator=(const DsmNode&) = delete;

  [[nodiscard]] uint16_t port() const;
  // Join: opens the connection to one peer (retrying until connect_timeout while it starts up). By convention the
  // node with the larger id connects, so a node joining later connects to everyone.
  absl::Status Connect(const DsmPeer& peer);
  // Waits until every listed node is connected.
  absl::Status WaitForPeers(const std::vector<NodeId>& nodes, absl::Duration timeout);
  // Graceful leave: every page this node holds goes back to its manager, then peers are told. Accessors of the
  // memory must be stopped first. The node is stopped afterwards. `timeout` bounds each wait for progress (requests
  // answered, the managers taking pages back), not the whole hand-back, which grows with the pages held.
  absl::Status Leave(absl::Duration timeout);
  // Tells the peers this node is going (so its disconnect is not an error), stops every thread and releases
  // the memory from userfaultfd. Idempotent; the destructor calls it.
  void Stop();

  // Bulk lane: never delays page faults (see PeerChannel).
  // Small latency-critical messages (forwarded exits, interrupts) belong on the fault lane, written at
  // once by the caller; large payloads on the bulk lane, which never delays a fault behind a backlog.
  absl::Status SendUserMessage(NodeId to, std::vector<uint8_t> payload, Lane lane = Lane::kBulk);

  // Device pins (docs/DSM.md, "Devices that touch guest RAM"), for the node that manages the page (the home):
  // PinPage takes write ownership of `page` here (a write access that changes nothing; it faults like any
  // other) and pins it, so peers' requests wait until UnpinPage and a device outside the DSM may read and write
  // this node's copy meanwhile. Pins nest. PinPage fails after request_timeout or once the node has failed.
  absl::Status PinPage(uint64_t page);
  void UnpinPage(uint64_t page);

  // Changes the emulated link for what this node sends to `peer` from now on (tests of a degrading link, `coalesce
  // ctl link`). NotFound without a connection to `peer`; FailedPrecondition when emulation was off at start.
  absl::Status SetLinkEmulation(NodeId peer, const LinkEmulation& link);

  // Memory nodes (docs/DSM.md, "Spilling to memory nodes"), at the home: keep at most `pages` of guest RAM present
  // here (0: no limit), spilling the oldest pages to memory nodes. A memory node takes up to `capacity` pages,
  // first those in its `range` of pages [first, second) (the RAM its guest NUMA domain names; none when empty);
  // removing one spills nothing more to it (its pages come back when it leaves).
  void SetMemoryAllowance(uint64_t pages);
  void SetMemoryNode(NodeId node, uint64_t capacity, std::pair<uint64_t, uint64_t> range = {0, 0});
  void RemoveMemoryNode(NodeId node);
  // The allowance (0: none) and the memory nodes' total capacity, in pages.
  [[nodiscard]] uint64_t memory_allowance() const;
  [[nodiscard]] uint64_t memory_nodes_capacity() const;
  // Pages present in this node's memory now, and the most there were at once (home only; 0 elsewhere).
  [[nodiscard]] uint64_t resident_pages() const;
  [[nodiscard]] uint64_t peak_resident_pages() const;

  // OK while healthy, else the first fatal error.
  [[nodiscard]] absl::Status health() const;
  [[nodiscard]] const DsmStats& stats() const { return *stats_; }
  [[nodiscard]] std::string FormatStats(size_t hot_n = 10) const;
  [[nodiscard]] std::vector<HotPage> HotPages(size_t n) const { return stats_->HotPages(n); }
  [[nodiscard]] uint8_t* data() const { return base_; }
  [[nodiscard]] uint64_t size() const { return size_; }
  [[nodiscard]] NodeId id() const { return config_.self; }
  [[nodiscard]] PageState page_state(uint64_t page) const;
  // For the pages this node manages (the home manages all of a VM's): how many each node owns, by node id.
  // One pass over the directory under the protocol lock (about a millisecond per GiB of guest RAM).
  [[nodiscard]] std::vector<uint64_t> OwnedPagesPerNode() const;
  [[nodiscard]] std::vector<NodeId> connected_peers() const;

 private:
  DsmNode(const DsmNodeConfig& config, uint8_t* base, uint64_t size);
  absl::Status Init(int memfd);
  void FaultLoop();
  absl::Time Tick(absl::Time now);  // checks request deadlines; returns when to check next
  void LivenessLoop();
  void SpillLoop();
  void CheckLinks(absl::Time now);
  // Runs one engine step under mu_ and routes its output (see RouteLocked), then flushes the connections it used
  // and feeds the messages addressed to this node back in, each as a step of its own. `peer`: the node whose
  // message this step handles, whose connection is closed if the step fails (kNoNode for local events).
  template <typename Step>
  void RunStep(NodeId peer, Step&& step);
  // Queues remote messages on their connections in the order the engine produced them (the protocol relies on
  // per-pair order, see ProtocolEngine); collects this node's own messages in `local`.
  void RouteLocked(std::vector<Message>& out, std::deque<Message>* local, std::vector<NodeId>* touched)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushTouched(std::vector<NodeId>* touched);
  void OnPeerMessage(NodeId peer, Message msg);
  void OnPeerClosed(NodeId peer, const absl::Status& why);
  void Fail(const absl::Status& why);
  void SendLeaveNotices();

  DsmNodeConfig config_;
  uint8_t* base_;
  uint64_t size_;
  UniqueFd own_memfd_;  // CreateWithOwnMemory only
  Mapping own_mapping_;
  std::unique_ptr<DsmStats> stats_;
  std::unique_ptr<DirectoryPlacement> placement_;
  std::unique_ptr<UffdPageMemory> memory_;
  mutable absl::Mutex mu_;  // the protocol state; never held across a network write
  std::unique_ptr<ProtocolEngine> engine_ ABSL_GUARDED_BY(mu_);
  // Home only: memory_ as the engine sees it, counting the pages present here, and the allowance they are kept in.
  std::unique_ptr<ResidentPages> resident_ ABSL_GUARDED_BY(mu_);
  MemoryAllowance allowance_ ABSL_GUARDED_BY(mu_);
  static constexpr size_t kSpillBatch = 64;  // pages moved per engine step
  // Home with an allowance and somewhere to spill: only then does the fault thread check FarOver (a lock more per
  // fault), so a VM without memory edges pays nothing for them.
  std::atomic<bool> spilling_{false};
  void UpdateSpillingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KickSpiller();         // wakes the spill thread now
  std::thread spill_thread_;  // home only
  absl::Mutex spill_mu_;      // only for the spill thread's wait (a leaf)
  bool spill_kick_ ABSL_GUARDED_BY(spill_mu_) = false;
  // The spill thread sleeps under the allowance: an engine step that leaves home over it wakes the thread (a
  // step that races its falling asleep is caught by the thread's 100 ms look).
  std::atomic<bool> spill_idle_{false};
  std::unique_ptr<Transport> transport_;
  UniqueFd wake_;  // eventfd: stops the fault thread
  std::thread fault_thread_;
  std::thread liveness_thread_;
  absl::Mutex liveness_mu_;  // only for the liveness thread's timed wait on stopping_
  // Threads between taking engine output (under mu_) and flushing all of it (RunStep): Leave() waits for zero so that
  // the last EVICT_DONE is on the wire before the node stops.
  std::atomic<int> dispatching_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> full_reported_{false};  // "every memory node is full" is logged once
  mutable absl::Mutex state_mu_;
  absl::Status failure_ ABSL_GUARDED_BY(state_mu_);
  absl::flat_hash_set<NodeId> departed_ ABSL_GUARDED_BY(state_mu_);
};

}  // namespace coalesce::dsm
