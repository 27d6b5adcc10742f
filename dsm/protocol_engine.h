// The coherence protocol of one DSM node, as a pure state machine: inputs are local faults, peer messages and the
// clock; outputs are messages (appended to `out`) and operations on this node's PageMemory. No threads, sockets or
// userfaultfd in here, so the unit tests can replay any interleaving of messages. DsmNode serializes all calls
// (one mutex) and routes the output messages, including the ones addressed to this very node.
//
// Protocol (docs/DSM.md has the full state machine): MSI per page and per node, single writer or many readers.
// Each page has a manager (DirectoryPlacement) holding its owner and copyset, and the manager runs one operation
// per page at a time: a request that arrives while the page is busy waits in a FIFO queue. An operation ends only
// when the requester confirms (READ_DONE / WRITE_DONE) that it installed the page, so the directory is never
// behind what the nodes hold and no message can overtake an operation on the same page. When the manager owns the
// page it answers itself and ends the operation at once: its later messages about the page go to the requester on
// the same connection, behind the grant, so they cannot overtake it either. This needs the transport to keep each
// node pair's messages in the order the engine produced them (DsmNode queues them under its lock).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dsm/directory_placement.h"
#include "dsm/dsm_stats.h"
#include "dsm/page_memory.h"
#include "dsm/wire_format.h"

namespace coalesce::dsm {

enum class PageState : uint8_t { kInvalid = 0, kShared = 1, kModified = 2 };
const char* PageStateName(PageState s);

// One protocol message, decoded; the transport maps it to and from WireHeader + payload.
struct Message {
  MsgType type = MsgType::kHeartbeat;
  NodeId src = kNoNode;
  NodeId dst = kNoNode;
  uint64_t page = 0;
  uint32_t arg = 0;
  uint16_t flags = 0;
  uint64_t seq = 0;
  std::vector<uint8_t> payload;
};

struct EngineConfig {
  NodeId self = 0;
  NodeId home = 0;
  uint64_t num_pages = 0;
  // Longest a request or a manager operation may wait for a peer before the node fails.
  absl::Duration request_timeout = absl::Seconds(5);
};

class ProtocolEngine final {
 public:
  // Pages start Modified and owned by the home node, Invalid elsewhere (the caller makes sure that non-home
  // memory starts absent). `placement`, `mem` and `stats` must outlive the engine.
  ProtocolEngine(const EngineConfig& config, const DirectoryPlacement* placement, PageMemory* mem,
                 DsmStats* stats);

  // A local access faulted. `write`: the access was a write; `wp`: it hit a write-protected present page.
  absl::Status OnFault(uint64_t page, bool write, bool wp, absl::Time now, std::vector<Message>* out);
  // A message from a peer or from this node. An error means the message broke the protocol (the caller closes
  // that peer) or the local memory failed; either way the node can no longer be coherent.
  absl::Status OnMessage(const Message& msg, absl::Time now, std::vector<Message>* out);
  // DeadlineExceeded naming the page and the node waited for, if any wait is older than the timeout.
  [[nodiscard]] absl::Status CheckTimeouts(absl::Time now) const;
  // When CheckTimeouts could next fail: the earliest deadline of a request or manager operation in flight
  // (absl::InfiniteFuture() when none is).
  [[nodiscard]] absl::Time NextDeadline() const;

  // Device pins (docs/DSM.md, "Devices that touch guest RAM"): while pinned, the page stays Modified here and a
  // peer's request for it waits until the last Unpin, so a device outside the DSM (qemu-storage-daemon) may read
  // and write this node's copy. Pin needs this node to manage the page and own it Modified with no operation in
  // progress; FailedPrecondition otherwise (the caller takes ownership with a write access and tries again).
  absl::Status Pin(uint64_t page);
  absl::Status Unpin(uint64_t page, absl::Time now, std::vector<Message>* out);
  [[nodiscard]] bool pinned(uint64_t page) const { return pins_.contains(page); }

  // Spilling (docs/DSM.md, "Spilling to memory nodes"), for the manager: Spill hands `page` to `target` unasked,
  // as a write grant would (the target becomes owner, Modified, and this node drops its copy); DropCopy drops a
  // Shared copy this node holds of a page another node owns. Both only for an idle page (no operation, request,
  // pin) this node manages; Spill also needs this node to own the page and hold its only copy. FailedPrecondition
  // otherwise (CanSpill/CanDropCopy say so beforehand). No round trip: like the manager's own grants, the spill
  // travels ahead of anything the manager sends the target about the page later.
  [[nodiscard]] bool CanSpill(uint64_t page) const;
  [[nodiscard]] bool CanDropCopy(uint64_t page) const;
  absl::Status Spill(uint64_t page, NodeId target, std::vector<Message>* out);
  absl::Status DropCopy(uint64_t page);

  // Graceful leave: hands every page this node holds back to its manager. The caller has stopped every accessor
  // of the memory first. Done when leave_complete().
  absl::Status BeginLeave(std::vector<Message>* out);
  [[nodiscard]] bool leave_complete() const { return leaving_ && evicting_.empty() && leave_queue_.empty(); }
  [[nodiscard]] size_t pages_evicting() const { return evicting_.size() + leave_queue_.size(); }

  // Introspection (tests, stats).
  [[nodiscard]] PageState state(uint64_t page) const { return static_cast<PageState>(pages_[page].state); }
  [[nodiscard]] bool is_owner(uint64_t page) const { return pages_[page].owner; }
  [[nodiscard]] bool request_pending(uint64_t page) const { return pending_.contains(page); }
  [[nodiscard]] size_t pending_requests() const { return pending_.size(); }
  [[nodiscard]] size_t active_operations() const { return ops_.size(); }
  struct DirectoryView {
    NodeId owner;
    uint64_t copyset;
    bool busy;
    size_t queued;
  };
  // For pages this node manages.
  [[nodiscard]] DirectoryView directory(uint64_t page) const;
  // How many of the pages this node manages each node owns (index = node id; kMaxNodes entries). Kept as the
  // directory changes, so asking is cheap.
  [[nodiscard]] std::vector<uint64_t> OwnedPagesPerNode() const;
  [[nodiscard]] NodeId ManagerOf(uint64_t page) const { return placement_->ManagerOf(page); }
  [[nodiscard]] uint64_t num_pages() const { return config_.num_pages; }
  [[nodiscard]] NodeId self() const { return config_.self; }

 private:
  struct LocalPage {
    uint8_t state = 0;  // PageState
    bool owner = false;
  };
  struct Pending {  // this node's outstanding request for a page
    MsgType kind;
    uint64_t req_id;
    absl::Time start;
    FaultKind fault_kind;
  };
  struct DirEntry {
    uint64_t copyset = 0;  // nodes holding a valid copy, the owner included
    NodeId owner = kNoNode;
  };
  struct ActiveOp {  // the manager's one operation in progress on a page
    Message req;
    uint64_t awaiting_acks = 0;
    absl::Time deadline;
    std::deque<Message> waiting;
  };

  absl::Status EnsurePresent(uint64_t page, bool writable);
  absl::Status AttachPage(uint64_t page, Message* m);
  void SendRequest(uint64_t page, MsgType kind, FaultKind fk, absl::Time now, std::vector<Message>* out,
                   uint32_t read_ahead = 0);
  uint32_t ReadAheadFor(uint64_t page);
  Message Reply(MsgType type, NodeId dst, uint64_t page, uint32_t arg = 0, uint16_t flags = 0,
                uint64_t seq = 0) const;

  // Manager side.
  absl::Status OnRequest(const Message& msg, absl::Time now, std::vector<Message>* out);
  absl::Status StartOp(uint64_t page, absl::Time now, std::vector<Message>* out);
  absl::Status SendTransfer(uint64_t page, absl::Time now, std::vector<Message>* out);
  absl::Status ReadAhead(uint64_t page, NodeId r, uint32_t count, std::vector<Message>* out);
  absl::Status HandleEvict(const Message& msg, std::vector<Message>* out);
  absl::Status FinishOp(uint64_t page, absl::Time now, std::vector<Message>* out);
  absl::Status OnInvAck(const Message& msg, absl::Time now, std::vector<Message>* out);
  absl::Status OnDone(const Message& msg, absl::Time now, std::vector<Message>* out);
  // Owner side.
  absl::Status OnFwdRead(const Message& msg, std::vector<Message>* out);
  absl::Status OnFwdWrite(const Message& msg, std::vector<Message>* out);
  // The owner's two actions, also run directly by a manager that owns the page.
  absl::Status SendSharedCopy(uint64_t page, NodeId requester, uint64_t seq, uint16_t extra_flags,
                              std::vector<Message>* out);
  absl::Status GiveAway(uint64_t page, NodeId requester, uint16_t fwd_flags, uint64_t seq, uint16_t extra_flags,
                        std::vector<Message>* out);
  // Requester / sharer side.
  absl::Status OnPageData(const Message& msg, absl::Time now, std::vector<Message>* out);
  absl::Status OnReadAhead(const Message& msg, std::vector<Message>* out);
  absl::Status OnSpill(const Message& msg, std::vector<Message>* out);
  [[nodiscard]] bool Idle(uint64_t page) const;
  absl::Status OnInvalidate(const Message& msg, std::vector<Message>* out);
  absl::Status OnEvictAck(const Message& msg, std::vector<Message>* out);
  absl::Status EvictMore(std::vector<Message>* out);
  // The one way a directory entry changes owner: keeps owned_ in step.
  void SetOwner(uint64_t page, NodeId owner);

  EngineConfig config_;
  const DirectoryPlacement* placement_;
  PageMemory* mem_;
  DsmStats* stats_;
  std::vector<LocalPage> pages_;
  std::vector<DirEntry> dir_;  // indexed by page; meaningful where ManagerOf(page) == self
  std::array<uint64_t, kMaxNodes> owned_{};  // pages of dir_ (managed here) each node owns
  absl::flat_hash_map<uint64_t, Pending> pending_;
  absl::flat_hash_map<uint64_t, ActiveOp> ops_;
  absl::flat_hash_map<uint64_t, bool> evicting_;
  absl::flat_hash_map<uint64_t, uint32_t> pins_;             // page -> pin count
  absl::flat_hash_map<uint64_t, std::deque<Message>> held_;  // requests waiting for a pinned page
  uint64_t next_req_id_ = 1;
  static constexpr uint64_t kNoPage = ~uint64_t{0};
  uint64_t last_read_miss_ = kNoPage;  // read-ahead: the previous read miss and the current window
  uint32_t read_ahead_ = 0;
  bool leaving_ = false;
  // Leaving: pages still to hand back, kLeaveWindow of them in flight at a time (evicting_), so a node holding
  // many (a memory node) does not queue all of them on its connection at once.
  std::deque<uint64_t> leave_queue_;
  static constexpr size_t kLeaveWindow = 256;
};

}  // namespace coalesce::dsm
