#include "dsm/protocol_engine.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce::dsm {
namespace {

uint64_t Bit(NodeId n) { return uint64_t{1} << n; }

// The bytes to install from a message that carries a page: nullptr for a zero page (Install writes zeros).
const uint8_t* PageBytes(const Message& m) { return m.payload.empty() ? nullptr : m.payload.data(); }
bool CarriesPage(const Message& m) { return !m.payload.empty() || (m.flags & kFlagZeroPage) != 0; }

absl::Status Violation(const Message& m, const std::string& why) {
  return absl::DataLossError(absl::StrFormat("protocol violation by node %u: %s for page %#x: %s", m.src,
                                             MsgTypeName(m.type), m.page, why));
}

}  // namespace

const char* PageStateName(PageState s) {
  switch (s) {
    case PageState::kInvalid: return "Invalid";
    case PageState::kShared: return "Shared";
    case PageState::kModified: return "Modified";
  }
  return "?";
}

ProtocolEngine::ProtocolEngine(const EngineConfig& config, const DirectoryPlacement* placement, PageMemory* mem,
                               DsmStats* stats)
    : config_(config), placement_(placement), mem_(mem), stats_(stats), pages_(config.num_pages) {
  const bool home = config_.self == config_.home;
  if (home) {
    for (auto& p : pages_) p = LocalPage{static_cast<uint8_t>(PageState::kModified), true};
  }
  bool manages_any = false;
  for (uint64_t p = 0; p < config_.num_pages && !manages_any; ++p) manages_any = ManagerOf(p) == config_.self;
  if (manages_any) {
    dir_.assign(config_.num_pages, DirEntry{Bit(config_.home), config_.home});
    for (uint64_t p = 0; p < config_.num_pages; ++p) owned_[config_.home] += ManagerOf(p) == config_.self;
  }
}

Message ProtocolEngine::Reply(MsgType type, NodeId dst, uint64_t page, uint32_t arg, uint16_t flags,
                              uint64_t seq) const {
  Message m;
  m.type = type;
  m.src = config_.self;
  m.dst = dst;
  m.page = page;
  m.arg = arg;
  m.flags = flags;
  m.seq = seq;
  return m;
}

// Reads the page into `m`, or marks it kFlagZeroPage when it is all zeros (untouched guest memory mostly is):
// 32 bytes on the wire instead of 4 KiB, which is what a slow link's bandwidth spends most on.
absl::Status ProtocolEngine::AttachPage(uint64_t page, Message* m) {
  m->payload.resize(kPageSize);
  RETURN_IF_ERROR(mem_->ReadPage(page, m->payload.data()));
  const uint8_t* b = m->payload.data();
  uint64_t any = 0;
  for (size_t i = 0; i < kPageSize; i += sizeof(uint64_t)) {
    uint64_t w;
    std::memcpy(&w, b + i, sizeof(w));
    any |= w;
  }
  if (any == 0) {
    m->payload.clear();
    m->flags |= kFlagZeroPage;
    stats_->zero_pages_sent.fetch_add(1, std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

// A page this node holds (Shared/Modified) but that is absent can only be one the home never touched: zeros.
absl::Status ProtocolEngine::EnsurePresent(uint64_t page, bool writable) {
  absl::Status s = mem_->Install(page, nullptr, writable);
  if (absl::IsAlreadyExists(s)) return mem_->Wake(page);
  return s;
}

void ProtocolEngine::SendRequest(uint64_t page, MsgType kind, FaultKind fk, absl::Time now,
                                 std::vector<Message>* out, uint32_t read_ahead) {
  const uint64_t id = next_req_id_++;
  pending_[page] = Pending{kind, id, now, fk};
  stats_->faults[static_cast<int>(fk)].fetch_add(1, std::memory_order_relaxed);
  out->push_back(Reply(kind, ManagerOf(page), page, read_ahead, 0, id));
}

// A read miss just after the previous one (at most the window past it, since pages read ahead do not fault) is
// sequential: the window doubles up to kMaxReadAhead. Any other read miss closes it.
uint32_t ProtocolEngine::ReadAheadFor(uint64_t page) {
  const bool sequential = last_read_miss_ != kNoPage && page > last_read_miss_ &&
                          page <= last_read_miss_ + read_ahead_ + 1;
  read_ahead_ = sequential ? std::min(kMaxReadAhead, std::max<uint32_t>(2, read_ahead_ * 2)) : 0;
  last_read_miss_ = page;
  return read_ahead_;
}

absl::Status ProtocolEngine::OnFault(uint64_t page, bool write, bool wp, absl::Time now,
                                     std::vector<Message>* out) {
  if (page >= config_.num_pages) return absl::OutOfRangeError(absl::StrFormat("fault on page %#x", page));
  stats_->CountPageFault(page);
  LocalPage& lp = pages_[page];
  auto local = [&] { stats_->faults[static_cast<int>(FaultKind::kLocal)].fetch_add(1, std::memory_order_relaxed); };
  switch (static_cast<PageState>(lp.state)) {
    case PageState::kModified:
      // Stale event (resolved since it was raised) or a home page never touched yet.
      local();
      return wp ? mem_->MakeWritable(page) : EnsurePresent(page, /*writable=*/true);
    case PageState::kShared:
      if (!write) {
        local();
        return EnsurePresent(page, /*writable=*/false);
      }
      // Write to a Shared page. If it is absent (never-touched home page) materialize it read-only first so the
      // upgrade, which carries no data, has something to make writable.
      if (!wp) RETURN_IF_ERROR(EnsurePresent(page, /*writable=*/false));
      if (pending_.contains(page)) return absl::OkStatus();
      SendRequest(page, MsgType::kWriteReq, FaultKind::kUpgrade, now, out);
      return absl::OkStatus();
    case PageState::kInvalid:
      // One request per page at a time: a fault of another kind is retried by its thread once this one is
      // resolved (the install wakes every waiter on the page), and faults again if it still needs more.
      if (pending_.contains(page)) return absl::OkStatus();
      if (leaving_) return absl::FailedPreconditionError("fault on a node that is leaving");
      SendRequest(page, write ? MsgType::kWriteReq : MsgType::kReadReq,
                  write ? FaultKind::kWriteMiss : FaultKind::kReadMiss, now, out, write ? 0 : ReadAheadFor(page));
      return absl::OkStatus();
  }
  return absl::InternalError("bad page state");
}

absl::Status ProtocolEngine::OnMessage(const Message& msg, absl::Time now, std::vector<Message>* out) {
  if (msg.src >= kMaxNodes) return Violation(msg, "bad source");
  if (msg.page >= config_.num_pages) return Violation(msg, "page out of range");
  switch (msg.type) {
    case MsgType::kReadReq:
    case MsgType::kWriteReq:
    case MsgType::kEvictReq:
      return OnRequest(msg, now, out);
    case MsgType::kInvAck: return OnInvAck(msg, now, out);
    case MsgType::kReadDone:
    case MsgType::kWriteDone: return OnDone(msg, now, out);
    case MsgType::kFwdRead: return OnFwdRead(msg, out);
    case MsgType::kFwdWrite: return OnFwdWrite(msg, out);
    case MsgType::kPageData: return OnPageData(msg, now, out);
    case MsgType::kInvalidate: return OnInvalidate(msg, out);
    case MsgType::kEvictAck: return OnEvictAck(msg, out);
    case MsgType::kEvictDone: {
      auto it = ops_.find(msg.page);
      if (it == ops_.end() || it->second.req.type != MsgType::kEvictReq || it->second.req.src != msg.src) {
        return Violation(msg, "no eviction of this node in progress");
      }
      return FinishOp(msg.page, now, out);
    }
    default: return Violation(msg, "not a protocol message");
  }
}

// ---------------------------------------------------------------- manager side

absl::Status ProtocolEngine::OnRequest(const Message& msg, absl::Time now, std::vector<Message>* out) {
  if (ManagerOf(msg.page) != config_.self) return Violation(msg, "this node does not manage the page");
  if (pins_.contains(msg.page) && msg.src != config_.self) {
    // A device is using the page: the request waits for Unpin (the requester's own deadline still runs).
    held_[msg.page].push_back(msg);
    stats_->requests_queued.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  auto it = ops_.find(msg.page);
  if (it != ops_.end()) {
    // The page is busy: the request waits its turn (FIFO), which is what makes concurrent faults on one page safe.
    it->second.waiting.push_back(msg);
    stats_->requests_queued.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  ActiveOp& op = ops_[msg.page];
  op.req = msg;
  return StartOp(msg.page, now, out);
}

absl::Status ProtocolEngine::StartOp(uint64_t page, absl::Time now, std::vector<Message>* out) {
  ActiveOp& op = ops_.at(page);
  op.deadline = now + config_.request_timeout;
  op.awaiting_acks = 0;
  const Message& req = op.req;
  DirEntry& e = dir_[page];
  const NodeId r = req.src;
  switch (req.type) {
    case MsgType::kReadReq:
      if (e.copyset & Bit(r)) {
        // The requester got a copy while its request waited (the manager took a leaving node's page): confirm
        // without data.
        if (r == config_.self) {
          out->push_back(Reply(MsgType::kPageData, r, page, 0, kFlagNoData, req.seq));
          return absl::OkStatus();
        }
        out->push_back(Reply(MsgType::kPageData, r, page, 0, kFlagNoData | kFlagOpDone, req.seq));
        return FinishOp(page, now, out);
      }
      if (e.owner == config_.self && r != config_.self) {
        // The manager owns the page: it answers itself and the operation ends here (no READ_DONE round).
        const uint32_t ahead = std::min(req.arg, kMaxReadAhead);  // `req` goes with the operation
        RETURN_IF_ERROR(SendSharedCopy(page, r, req.seq, kFlagOpDone, out));
        e.copyset |= Bit(r);
        RETURN_IF_ERROR(FinishOp(page, now, out));
        return ReadAhead(page, r, ahead, out);
      }
      out->push_back(Reply(MsgType::kFwdRead, e.owner, page, r, 0, req.seq));
      return absl::OkStatus();
    case MsgType::kWriteReq: {
      const uint64_t others = e.copyset & ~Bit(r) & ~Bit(e.owner);
      op.awaiting_acks = others;
      for (NodeId n = 0; n < kMaxNodes; ++n) {
        if (others & Bit(n)) {
          out->push_back(Reply(MsgType::kInvalidate, n, page, r, 0, req.seq));
          stats_->invalidations_sent.fetch_add(1, std::memory_order_relaxed);
        }
      }
      if (others == 0) return SendTransfer(page, now, out);
      return absl::OkStatus();
    }
    case MsgType::kEvictReq:
      // The directory forgets the node now; the page stays busy until the node confirms it dropped its copy, so
      // no writer can be granted the page while that stale copy still exists.
      return HandleEvict(req, out);
    default:
      return absl::InternalError("bad queued request");
  }
}

// After granting `page` to a sequential reader, the manager pushes Shared copies of the pages that follow, as long
// as each is one it owns, idle (no operation, queue, pin), and not already held by the reader: the same grant as a
// READ_REQ would get, without the reader's round trip. They travel behind the grant on the same connection; a
// fault the reader raises meanwhile on one of them is answered without data (it is in the copyset by then).
absl::Status ProtocolEngine::ReadAhead(uint64_t page, NodeId r, uint32_t count, std::vector<Message>* out) {
  for (uint64_t p = page + 1; p <= page + count && p < config_.num_pages; ++p) {
    if (ManagerOf(p) != config_.self || ops_.contains(p) || pins_.contains(p) || held_.contains(p)) break;
    DirEntry& e = dir_[p];
    if (e.owner != config_.self || (e.copyset & Bit(r)) ||
        pages_[p].state == static_cast<uint8_t>(PageState::kInvalid)) {
      break;
    }
    RETURN_IF_ERROR(SendSharedCopy(p, r, 0, kFlagOpDone | kFlagReadAhead, out));
    e.copyset |= Bit(r);
    stats_->pages_read_ahead.fetch_add(1, std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

// Every other copy is gone: the owner hands the page over (or the requester, if it is the owner, upgrades).
absl::Status ProtocolEngine::SendTransfer(uint64_t page, absl::Time now, std::vector<Message>* out) {
  const ActiveOp& op = ops_.at(page);
  DirEntry& e = dir_[page];
  const NodeId r = op.req.src;
  const uint16_t flags = (e.copyset & Bit(r)) ? kFlagNoData : 0;
  if (e.owner == config_.self && r != config_.self) {
    // The manager owns the page: it hands it over itself and the operation ends here (no WRITE_DONE round).
    RETURN_IF_ERROR(GiveAway(page, r, flags, op.req.seq, kFlagOpDone, out));
    SetOwner(page, r);
    e.copyset = Bit(r);
    return FinishOp(page, now, out);
  }
  out->push_back(Reply(MsgType::kFwdWrite, e.owner, page, r, flags, op.req.seq));
  return absl::OkStatus();
}

absl::Status ProtocolEngine::OnInvAck(const Message& msg, absl::Time now, std::vector<Message>* out) {
  auto it = ops_.find(msg.page);
  if (it == ops_.end() || it->second.req.type != MsgType::kWriteReq || !(it->second.awaiting_acks & Bit(msg.src))) {
    return Violation(msg, "no invalidation awaits this acknowledgement");
  }
  ActiveOp& op = it->second;
  op.awaiting_acks &= ~Bit(msg.src);
  dir_[msg.page].copyset &= ~Bit(msg.src);
  if (op.awaiting_acks == 0) return SendTransfer(msg.page, now, out);
  return absl::OkStatus();
}

absl::Status ProtocolEngine::OnDone(const Message& msg, absl::Time now, std::vector<Message>* out) {
  auto it = ops_.find(msg.page);
  const MsgType want = msg.type == MsgType::kReadDone ? MsgType::kReadReq : MsgType::kWriteReq;
  if (it == ops_.end() || it->second.req.type != want || it->second.req.src != msg.src ||
      it->second.req.seq != msg.seq || it->second.awaiting_acks != 0) {
    return Violation(msg, "does not match the operation in progress");
  }
  DirEntry& e = dir_[msg.page];
  if (want == MsgType::kReadReq) {
    e.copyset |= Bit(msg.src);
  } else {
    SetOwner(msg.page, msg.src);
    e.copyset = Bit(msg.src);
  }
  return FinishOp(msg.page, now, out);
}

absl::Status ProtocolEngine::HandleEvict(const Message& msg, std::vector<Message>* out) {
  DirEntry& e = dir_[msg.page];
  const NodeId x = msg.src;
  const NodeId self = config_.self;
  if (e.owner == x) {
    if (!CarriesPage(msg)) return Violation(msg, "the owner's eviction carries no page");
    e.copyset &= ~Bit(x);
    // The manager takes ownership; it keeps a read-only copy so that the remaining sharers stay valid.
    LocalPage& lp = pages_[msg.page];
    if (!(e.copyset & Bit(self))) {
      if (static_cast<PageState>(lp.state) != PageState::kInvalid) {
        return absl::InternalError(absl::StrFormat("page %#x: manager holds a copy the directory does not list",
                                                   msg.page));
      }
      RETURN_IF_ERROR(mem_->Install(msg.page, PageBytes(msg), /*writable=*/false));
      stats_->pages_received.fetch_add(1, std::memory_order_relaxed);
      lp.state = static_cast<uint8_t>(PageState::kShared);
    }
    lp.owner = true;
    SetOwner(msg.page, self);
    e.copyset |= Bit(self);
  } else {
    e.copyset &= ~Bit(x);
  }
  out->push_back(Reply(MsgType::kEvictAck, x, msg.page));
  return absl::OkStatus();
}

absl::Status ProtocolEngine::FinishOp(uint64_t page, absl::Time now, std::vector<Message>* out) {
  auto it = ops_.find(page);
  if (it->second.waiting.empty()) {
    ops_.erase(it);
    return absl::OkStatus();
  }
  it->second.req = std::move(it->second.waiting.front());
  it->second.waiting.pop_front();
  return StartOp(page, now, out);  // recursion depth is bounded by the queue, at most one entry per node
}

absl::Status ProtocolEngine::Pin(uint64_t page) {
  if (page >= pages_.size()) return absl::OutOfRangeError(absl::StrFormat("pin: page %#x is past the end", page));
  if (ManagerOf(page) != config_.self || !pages_[page].owner ||
      static_cast<PageState>(pages_[page].state) != PageState::kModified || ops_.contains(page)) {
    return absl::FailedPreconditionError(absl::StrFormat("pin: page %#x is not Modified here", page));
  }
  ++pins_[page];
  return absl::OkStatus();
}

absl::Status ProtocolEngine::Unpin(uint64_t page, absl::Time now, std::vector<Message>* out) {
  auto it = pins_.find(page);
  if (it == pins_.end()) return absl::InternalError(absl::StrFormat("unpin: page %#x is not pinned", page));
  if (--it->second > 0) return absl::OkStatus();
  pins_.erase(it);
  auto held = held_.find(page);
  if (held == held_.end()) return absl::OkStatus();
  std::deque<Message> waiting = std::move(held->second);
  held_.erase(held);
  for (const Message& m : waiting) RETURN_IF_ERROR(OnRequest(m, now, out));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- owner side

absl::Status ProtocolEngine::OnFwdRead(const Message& msg, std::vector<Message>* out) {
  const LocalPage& lp = pages_[msg.page];
  if (!lp.owner || lp.state == static_cast<uint8_t>(PageState::kInvalid)) {
    return Violation(msg, "this node does not own the page");
  }
  if (msg.arg >= kMaxNodes || msg.arg == config_.self) return Violation(msg, "bad requester");
  return SendSharedCopy(msg.page, static_cast<NodeId>(msg.arg), msg.seq, 0, out);
}

absl::Status ProtocolEngine::SendSharedCopy(uint64_t page, NodeId requester, uint64_t seq, uint16_t extra_flags,
                                            std::vector<Message>* out) {
  LocalPage& lp = pages_[page];
  if (!lp.owner || lp.state == static_cast<uint8_t>(PageState::kInvalid)) {
    return absl::InternalError(absl::StrFormat("page %#x: the directory names this node owner, it holds nothing", page));
  }
  if (lp.state == static_cast<uint8_t>(PageState::kModified)) {
    // Protect first: once WriteProtect returns no local thread can change the bytes we are about to send.
    RETURN_IF_ERROR(mem_->WriteProtect(page));
    lp.state = static_cast<uint8_t>(PageState::kShared);
  }
  Message data = Reply(MsgType::kPageData, requester, page, 0, extra_flags, seq);
  RETURN_IF_ERROR(AttachPage(page, &data));
  stats_->pages_sent.fetch_add(1, std::memory_order_relaxed);
  out->push_back(std::move(data));
  return absl::OkStatus();
}

absl::Status ProtocolEngine::OnFwdWrite(const Message& msg, std::vector<Message>* out) {
  const LocalPage& lp = pages_[msg.page];
  if (!lp.owner || lp.state == static_cast<uint8_t>(PageState::kInvalid)) {
    return Violation(msg, "this node does not own the page");
  }
  if (msg.arg >= kMaxNodes) return Violation(msg, "bad requester");
  const NodeId r = static_cast<NodeId>(msg.arg);
  if (r == config_.self) {
    // The owner itself upgrades Shared -> Modified: no data moves; the requester path below completes it.
    out->push_back(Reply(MsgType::kPageData, r, msg.page, 0, kFlagGrantModified | kFlagNoData, msg.seq));
    return absl::OkStatus();
  }
  return GiveAway(msg.page, r, msg.flags, msg.seq, 0, out);
}

absl::Status ProtocolEngine::GiveAway(uint64_t page, NodeId requester, uint16_t fwd_flags, uint64_t seq,
                                      uint16_t extra_flags, std::vector<Message>* out) {
  LocalPage& lp = pages_[page];
  if (!lp.owner || lp.state == static_cast<uint8_t>(PageState::kInvalid)) {
    return absl::InternalError(absl::StrFormat("page %#x: the directory names this node owner, it holds nothing", page));
  }
  if (lp.state == static_cast<uint8_t>(PageState::kModified)) RETURN_IF_ERROR(mem_->WriteProtect(page));
  Message data = Reply(MsgType::kPageData, requester, page, 0, kFlagGrantModified | extra_flags, seq);
  if (fwd_flags & kFlagNoData) {
    data.flags |= kFlagNoData;
  } else {
    RETURN_IF_ERROR(AttachPage(page, &data));
    stats_->pages_sent.fetch_add(1, std::memory_order_relaxed);
  }
  // Invalid before the page goes: a local access from now on faults and asks the manager, which is busy with this
  // very operation (or, if this node is the manager, finished it) and queues or serves it after the transfer
  // (the "node faulting on a page it is giving away" race).
  lp.state = static_cast<uint8_t>(PageState::kInvalid);
  lp.owner = false;
  RETURN_IF_ERROR(mem_->Drop(page));
  stats_->ownership_transfers.fetch_add(1, std::memory_order_relaxed);
  out->push_back(std::move(data));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- requester / sharer side

absl::Status ProtocolEngine::OnPageData(const Message& msg, absl::Time now, std::vector<Message>* out) {
  if (msg.flags & kFlagReadAhead) return OnReadAhead(msg, out);
  if (msg.flags & kFlagSpill) return OnSpill(msg, out);
  auto it = pending_.find(msg.page);
  if (it == pending_.end() || it->second.req_id != msg.seq) return Violation(msg, "no request awaits this page");
  LocalPage& lp = pages_[msg.page];
  const bool grant_m = (msg.flags & kFlagGrantModified) != 0;
  if (grant_m && it->second.kind != MsgType::kWriteReq) return Violation(msg, "Modified grant for a read");
  // Account before the install: the install wakes the faulting threads, which may read the stats at once.
  stats_->fault_latency[static_cast<int>(it->second.fault_kind)].Record(
      static_cast<uint64_t>(absl::ToInt64Nanoseconds(now - it->second.start)));
  if (CarriesPage(msg)) {
    if (lp.state != static_cast<uint8_t>(PageState::kInvalid)) return Violation(msg, "data for a page held");
    RETURN_IF_ERROR(mem_->Install(msg.page, PageBytes(msg), grant_m));
    stats_->pages_received.fetch_add(1, std::memory_order_relaxed);
  } else if (lp.state == static_cast<uint8_t>(PageState::kModified)) {
    // No data, and the page is ours already: the manager spilled it here while this request was on its way.
    if (!lp.owner) return Violation(msg, "Modified page without ownership");
    RETURN_IF_ERROR(mem_->Wake(msg.page));
  } else {
    // No data: the manager knows this node still holds a valid Shared copy.
    if (lp.state != static_cast<uint8_t>(PageState::kShared)) return Violation(msg, "no data for a page not held");
    RETURN_IF_ERROR(grant_m ? mem_->MakeWritable(msg.page) : mem_->Wake(msg.page));
  }
  if (lp.state != static_cast<uint8_t>(PageState::kModified)) {
    lp.state = static_cast<uint8_t>(grant_m ? PageState::kModified : PageState::kShared);
  }
  if (grant_m) lp.owner = true;
  pending_.erase(it);
  if (!(msg.flags & kFlagOpDone)) {
    out->push_back(Reply(grant_m ? MsgType::kWriteDone : MsgType::kReadDone, ManagerOf(msg.page), msg.page, 0, 0,
                         msg.seq));
  }
  return absl::OkStatus();
}

// A page the manager pushed after a sequential read miss. The directory lists this node from now on, so the copy
// is installed read-only like any Shared grant; a request of ours already on its way for the page is answered
// without data. A node that began leaving meanwhile hands the copy straight back.
absl::Status ProtocolEngine::OnReadAhead(const Message& msg, std::vector<Message>* out) {
  if (msg.src != ManagerOf(msg.page)) return Violation(msg, "read-ahead not from the manager");
  if ((msg.flags & (kFlagGrantModified | kFlagNoData)) || !(msg.flags & kFlagOpDone) || msg.seq != 0 ||
      !CarriesPage(msg)) {
    return Violation(msg, "read-ahead must be a Shared copy with data, OP_DONE and no request id");
  }
  LocalPage& lp = pages_[msg.page];
  if (lp.state != static_cast<uint8_t>(PageState::kInvalid)) return Violation(msg, "read-ahead of a page held");
  RETURN_IF_ERROR(mem_->Install(msg.page, PageBytes(msg), /*writable=*/false));
  stats_->pages_received.fetch_add(1, std::memory_order_relaxed);
  lp.state = static_cast<uint8_t>(PageState::kShared);
  if (leaving_) {
    evicting_[msg.page] = true;
    out->push_back(Reply(MsgType::kEvictReq, ManagerOf(msg.page), msg.page));
  }
  return absl::OkStatus();
}

// A page the manager spilled here: this node owns it from now on, Modified. A request of ours for it that is
// already on its way is answered without data (OnPageData keeps the page Modified). A node that began leaving
// meanwhile hands it straight back, with the data, as the owner.
absl::Status ProtocolEngine::OnSpill(const Message& msg, std::vector<Message>* out) {
  if (msg.src != ManagerOf(msg.page)) return Violation(msg, "spill not from the manager");
  if (!(msg.flags & kFlagGrantModified) || !(msg.flags & kFlagOpDone) || (msg.flags & (kFlagNoData | kFlagReadAhead)) ||
      msg.seq != 0 || !CarriesPage(msg)) {
    return Violation(msg, "a spill must be a Modified grant with data, OP_DONE and no request id");
  }
  LocalPage& lp = pages_[msg.page];
  if (lp.state != static_cast<uint8_t>(PageState::kInvalid)) return Violation(msg, "spill of a page held");
  RETURN_IF_ERROR(mem_->Install(msg.page, PageBytes(msg), /*writable=*/true));
  stats_->pages_received.fetch_add(1, std::memory_order_relaxed);
  stats_->pages_taken_in.fetch_add(1, std::memory_order_relaxed);
  lp.state = static_cast<uint8_t>(PageState::kModified);
  lp.owner = true;
  if (leaving_) {
    RETURN_IF_ERROR(mem_->WriteProtect(msg.page));
    lp.state = static_cast<uint8_t>(PageState::kShared);
    Message m = Reply(MsgType::kEvictReq, ManagerOf(msg.page), msg.page);
    RETURN_IF_ERROR(AttachPage(msg.page, &m));
    evicting_[msg.page] = true;
    out->push_back(std::move(m));
  }
  return absl::OkStatus();
}

absl::Status ProtocolEngine::OnInvalidate(const Message& msg, std::vector<Message>* out) {
  LocalPage& lp = pages_[msg.page];
  if (msg.src != ManagerOf(msg.page)) return Violation(msg, "invalidation not from the manager");
  if (lp.owner || lp.state != static_cast<uint8_t>(PageState::kShared)) {
    return Violation(msg, absl::StrFormat("invalidation of a page in state %s%s",
                                          PageStateName(static_cast<PageState>(lp.state)),
                                          lp.owner ? " (owner)" : ""));
  }
  lp.state = static_cast<uint8_t>(PageState::kInvalid);
  RETURN_IF_ERROR(mem_->Drop(msg.page));
  stats_->invalidations_received.fetch_add(1, std::memory_order_relaxed);
  out->push_back(Reply(MsgType::kInvAck, msg.src, msg.page, 0, 0, msg.seq));
  return absl::OkStatus();
}

absl::Status ProtocolEngine::OnEvictAck(const Message& msg, std::vector<Message>* out) {
  if (!evicting_.contains(msg.page)) return Violation(msg, "no eviction in progress");
  LocalPage& lp = pages_[msg.page];
  if (lp.state != static_cast<uint8_t>(PageState::kInvalid)) RETURN_IF_ERROR(mem_->Drop(msg.page));
  lp = LocalPage{};
  evicting_.erase(msg.page);
  out->push_back(Reply(MsgType::kEvictDone, msg.src, msg.page));
  return EvictMore(out);
}

// The next pages of a leave, up to the window. A queued page may have been taken meanwhile (a FWD_WRITE gave it
// away, an INVALIDATE dropped the copy): it is skipped; one still owned goes back with its contents.
absl::Status ProtocolEngine::EvictMore(std::vector<Message>* out) {
  while (evicting_.size() < kLeaveWindow && !leave_queue_.empty()) {
    const uint64_t page = leave_queue_.front();
    leave_queue_.pop_front();
    const LocalPage& lp = pages_[page];
    if (lp.state == static_cast<uint8_t>(PageState::kInvalid) || evicting_.contains(page)) continue;
    Message m = Reply(MsgType::kEvictReq, ManagerOf(page), page);
    if (lp.owner) RETURN_IF_ERROR(AttachPage(page, &m));
    evicting_[page] = true;
    out->push_back(std::move(m));
  }
  return absl::OkStatus();
}

bool ProtocolEngine::Idle(uint64_t page) const {
  return page < config_.num_pages && ManagerOf(page) == config_.self && !ops_.contains(page) &&
         !pending_.contains(page) && !pins_.contains(page) && !held_.contains(page);
}

bool ProtocolEngine::CanSpill(uint64_t page) const {
  return Idle(page) && dir_[page].owner == config_.self && dir_[page].copyset == Bit(config_.self) &&
         pages_[page].owner && pages_[page].state != static_cast<uint8_t>(PageState::kInvalid);
}

bool ProtocolEngine::CanDropCopy(uint64_t page) const {
  return Idle(page) && dir_[page].owner != config_.self && !pages_[page].owner &&
         pages_[page].state == static_cast<uint8_t>(PageState::kShared);
}

absl::Status ProtocolEngine::Spill(uint64_t page, NodeId target, std::vector<Message>* out) {
  if (target == config_.self || target >= kMaxNodes) {
    return absl::InvalidArgumentError(absl::StrFormat("spill of page %#x to node %u", page, target));
  }
  if (!CanSpill(page)) return absl::FailedPreconditionError(absl::StrFormat("page %#x cannot be spilled now", page));
  RETURN_IF_ERROR(GiveAway(page, target, 0, 0, kFlagOpDone | kFlagSpill, out));
  SetOwner(page, target);
  dir_[page].copyset = Bit(target);
  stats_->pages_spilled.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status ProtocolEngine::DropCopy(uint64_t page) {
  if (!CanDropCopy(page)) return absl::FailedPreconditionError(absl::StrFormat("page %#x: no copy to drop", page));
  // No message: this node is the manager, so the directory it changes is its own, and no operation is running
  // that could count on the copy.
  RETURN_IF_ERROR(mem_->Drop(page));
  pages_[page].state = static_cast<uint8_t>(PageState::kInvalid);
  dir_[page].copyset &= ~Bit(config_.self);
  stats_->copies_dropped.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status ProtocolEngine::BeginLeave(std::vector<Message>* out) {
  if (config_.self == config_.home) return absl::FailedPreconditionError("the home node cannot leave");
  if (!placement_->SupportsMembershipChange()) {
    return absl::FailedPreconditionError("the directory placement does not allow nodes to leave");
  }
  if (!pending_.empty()) return absl::FailedPreconditionError("requests in flight: stop the accessors first");
  leaving_ = true;
  for (uint64_t page = 0; page < config_.num_pages; ++page) {
    LocalPage& lp = pages_[page];
    if (lp.state == static_cast<uint8_t>(PageState::kInvalid)) continue;
    if (lp.state == static_cast<uint8_t>(PageState::kModified)) {
      RETURN_IF_ERROR(mem_->WriteProtect(page));
      lp.state = static_cast<uint8_t>(PageState::kShared);
    }
    leave_queue_.push_back(page);
  }
  return EvictMore(out);
}

absl::Status ProtocolEngine::CheckTimeouts(absl::Time now) const {
  for (const auto& [page, p] : pending_) {
    if (now - p.start > config_.request_timeout) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s of page %#x unanswered for %s (manager node %u or the node it forwarded to is lost)",
          MsgTypeName(p.kind), page, absl::FormatDuration(now - p.start), ManagerOf(page)));
    }
  }
  for (const auto& [page, op] : ops_) {
    if (now > op.deadline) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "manager: %s of page %#x from node %u not completed within %s (awaiting acks mask %#x)",
          MsgTypeName(op.req.type), page, op.req.src, absl::FormatDuration(config_.request_timeout),
          op.awaiting_acks));
    }
  }
  return absl::OkStatus();
}

absl::Time ProtocolEngine::NextDeadline() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [page, p] : pending_) next = std::min(next, p.start + config_.request_timeout);
  for (const auto& [page, op] : ops_) next = std::min(next, op.deadline);
  return next;
}

std::vector<uint64_t> ProtocolEngine::OwnedPagesPerNode() const { return {owned_.begin(), owned_.end()}; }

void ProtocolEngine::SetOwner(uint64_t page, NodeId owner) {
  DirEntry& e = dir_[page];
  if (e.owner < kMaxNodes) --owned_[e.owner];
  e.owner = owner;
  if (owner < kMaxNodes) ++owned_[owner];
}

ProtocolEngine::DirectoryView ProtocolEngine::directory(uint64_t page) const {
  if (dir_.empty()) return DirectoryView{kNoNode, 0, false, 0};
  auto it = ops_.find(page);
  return DirectoryView{dir_[page].owner, dir_[page].copyset, it != ops_.end(),
                       it != ops_.end() ? it->second.waiting.size() : 0};
}

}  // namespace coalesce::dsm
