#include "dsm/dsm_node.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>

#include "absl/strings/str_format.h"
#include "dsm/transport.h"
#include "dsm/uffd_page_memory.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/base/thread_name.h"

namespace coalesce::dsm {

DsmNode::DsmNode(const DsmNodeConfig& config, uint8_t* base, uint64_t size)
    : config_(config), base_(base), size_(size), stats_(std::make_unique<DsmStats>(size / kPageSize)) {
  const char* env = std::getenv("COALESCE_DSM_STATS");
  if (env != nullptr && env[0] == '1') config_.print_stats_at_exit = true;
}

absl::StatusOr<std::unique_ptr<DsmNode>> DsmNode::Create(const DsmNodeConfig& config, int memfd, uint8_t* base,
                                                         uint64_t size) {
  if (config.self >= kMaxNodes || config.home >= kMaxNodes) {
    return absl::InvalidArgumentError(absl::StrFormat("node ids must be below %u", kMaxNodes));
  }
  auto node = std::unique_ptr<DsmNode>(new DsmNode(config, base, size));
  RETURN_IF_ERROR(node->Init(memfd));
  return node;
}

absl::StatusOr<std::unique_ptr<DsmNode>> DsmNode::CreateWithOwnMemory(const DsmNodeConfig& config, uint64_t size) {
  int fd = ::memfd_create("coalesce-dsm", MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus("memfd_create");
  UniqueFd memfd(fd);
  if (::ftruncate(fd, static_cast<off_t>(size)) < 0) return ErrnoStatus("ftruncate DSM memfd");
  ASSIGN_OR_RETURN(Mapping map, Mapping::Map(size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0,
                                             "mmap DSM memory"));
  auto node = std::unique_ptr<DsmNode>(new DsmNode(config, map.data(), size));
  node->own_memfd_ = std::move(memfd);
  node->own_mapping_ = std::move(map);
  RETURN_IF_ERROR(node->Init(node->own_memfd_.get()));
  return node;
}

absl::Status DsmNode::Init(int memfd) {
  if (size_ == 0 || size_ % kPageSize != 0) return absl::InvalidArgumentError("DSM size must be whole pages");
  if (config_.hash_managers.empty()) {
    placement_ = MakeHomePlacement(config_.home);
  } else {
    for (NodeId n : config_.hash_managers) {
      if (n >= kMaxNodes) return absl::InvalidArgumentError("bad hash manager id");
    }
    placement_ = MakeHashPlacement(config_.hash_managers);
  }
  ASSIGN_OR_RETURN(memory_, UffdPageMemory::Create(memfd, base_, size_, config_.userfaultfd_device));
  const bool home = config_.self == config_.home;
  if (!home) RETURN_IF_ERROR(memory_->DropAll());
  {
    absl::MutexLock l(&mu_);
    EngineConfig ec;
    ec.self = config_.self;
    ec.home = config_.home;
    ec.num_pages = size_ / kPageSize;
    ec.request_timeout = config_.request_timeout;
    PageMemory* engine_memory = memory_.get();
    if (home) {
      // The home counts what is present, for its memory allowance: what was loaded before now (firmware, the
      // kernel) and, through the engine, every page installed or dropped from here on.
      resident_ = std::make_unique<ResidentPages>(memory_.get(), size_ / kPageSize);
      std::vector<unsigned char> in_core(size_ / kPageSize);
      if (::mincore(base_, size_, in_core.data()) != 0) return ErrnoStatus("mincore on the DSM memory");
      for (uint64_t page = 0; page < in_core.size(); ++page) {
        if (in_core[page] & 1) resident_->NotePresent(page);
      }
      engine_memory = resident_.get();
    }
    engine_ = std::make_unique<ProtocolEngine>(ec, placement_.get(), engine_memory, stats_.get());
  }
  wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_.valid()) return ErrnoStatus("eventfd");

  Transport::Options to;
  to.self = config_.self;
  to.num_pages = size_ / kPageSize;
  to.listen_address = config_.listen_address;
  to.listen_port = config_.listen_port;
  to.link = config_.link;
  to.io_timeout = config_.request_timeout;
  to.secret = config_.data_plane_secret;
  to.never_send = config_.never_send;
  Transport::Callbacks cb;
  cb.on_message = [this](NodeId peer, Message m) { OnPeerMessage(peer, std::move(m)); };
  cb.on_closed = [this](NodeId peer, const absl::Status& why) { OnPeerClosed(peer, why); };
  cb.on_peer_up = [this](NodeId peer) {
    absl::MutexLock l(&state_mu_);
    departed_.erase(peer);  // a node may come back after leaving
  };
  ASSIGN_OR_RETURN(transport_, Transport::Create(to, stats_.get(), std::move(cb)));
  fault_thread_ = StartNamedThread("dsm-fault", [this] { FaultLoop(); });
  liveness_thread_ = StartNamedThread("dsm-liveness", [this] { LivenessLoop(); });
  if (home) spill_thread_ = StartNamedThread("dsm-spill", [this] { SpillLoop(); });
  LOG_DEBUG("dsm node %u: serving %u pages, listening on port %u", config_.self, size_ / kPageSize, port());
  return absl::OkStatus();
}

DsmNode::~DsmNode() { Stop(); }

uint16_t DsmNode::port() const { return transport_->port(); }

absl::Status DsmNode::Connect(const DsmPeer& peer) {
  return transport_->Connect(peer.id, peer.host, peer.port, config_.connect_timeout);
}

absl::Status DsmNode::WaitForPeers(const std::vector<NodeId>& nodes, absl::Duration timeout) {
  return transport_->WaitForPeers(nodes, timeout);
}

std::vector<NodeId> DsmNode::connected_peers() const { return transport_->Peers(); }

absl::Status DsmNode::SetLinkEmulation(NodeId peer, const LinkEmulation& link) {
  for (const auto& ch : transport_->Channels()) {
    if (ch->peer() == peer && !ch->closed()) return ch->SetLinkEmulation(link);
  }
  return absl::NotFoundError(absl::StrFormat("no connection to node %u", peer));
}

void DsmNode::SetMemoryAllowance(uint64_t pages) {
  {
    absl::MutexLock l(&mu_);
    allowance_.SetAllowance(pages);
    UpdateSpillingLocked();
  }
  KickSpiller();
}

void DsmNode::SetMemoryNode(NodeId node, uint64_t capacity, std::pair<uint64_t, uint64_t> range) {
  {
    absl::MutexLock l(&mu_);
    allowance_.SetTarget(node, capacity, range);
    UpdateSpillingLocked();
  }
  KickSpiller();
}

void DsmNode::RemoveMemoryNode(NodeId node) {
  absl::MutexLock l(&mu_);
  allowance_.RemoveTarget(node);
  UpdateSpillingLocked();
}

void DsmNode::KickSpiller() {
  absl::MutexLock l(&spill_mu_);
  spill_kick_ = true;
}

void DsmNode::UpdateSpillingLocked() {
  // Only the home counts its pages (resident_); anywhere else an allowance would have nothing to act on.
  spilling_.store(resident_ != nullptr && allowance_.allowance() != 0 && allowance_.capacity() != 0,
                  std::memory_order_relaxed);
}

uint64_t DsmNode::memory_allowance() const {
  absl::MutexLock l(&mu_);
  return allowance_.allowance();
}

uint64_t DsmNode::memory_nodes_capacity() const {
  absl::MutexLock l(&mu_);
  return allowance_.capacity();
}

uint64_t DsmNode::resident_pages() const {
  absl::MutexLock l(&mu_);
  return resident_ ? resident_->count() : 0;
}

uint64_t DsmNode::peak_resident_pages() const {
  absl::MutexLock l(&mu_);
  return resident_ ? resident_->peak() : 0;
}

// The home's spill thread. While home is over its allowance it moves pages out in batches, each one engine step,
// so faults interleave with the spilling instead of waiting for all of it. It sleeps otherwise: without memory
// nodes until an allowance or a memory node is set (both kick it), under the allowance until an engine step
// leaves home over it (RunStep kicks it) or 100 ms pass. Only while over with no page it could move (every one
// busy in a transfer, or every memory node full) does it look again every 2 ms: nothing else says when a
// transfer ends.
void DsmNode::SpillLoop() {
  bool more = false;
  bool stuck = false;  // over the allowance, and the last round moved nothing
  while (!stopping_.load()) {
    if (!more) {
      absl::MutexLock l(&spill_mu_);
      const auto kicked = absl::Condition(
          +[](bool* kick) { return *kick; }, &spill_kick_);
      if (!spilling_.load(std::memory_order_relaxed)) {
        spill_mu_.Await(kicked);
      } else {
        spill_idle_.store(!stuck, std::memory_order_relaxed);
        spill_mu_.AwaitWithTimeout(kicked, stuck ? absl::Milliseconds(2) : absl::Milliseconds(100));
        spill_idle_.store(false, std::memory_order_relaxed);
      }
      spill_kick_ = false;
    }
    stats_->spill_rounds.fetch_add(1, std::memory_order_relaxed);
    if (stopping_.load() || !health().ok()) return;
    if (!spilling_.load(std::memory_order_relaxed)) {
      more = false;
      continue;
    }
    bool full = false;
    RunStep(kNoNode, [this, &more, &full, &stuck](ProtocolEngine* e, std::vector<Message>* out) {
      mu_.AssertHeld();
      ASSIGN_OR_RETURN(const MemoryAllowance::Round round,
                       allowance_.Step(e, resident_.get(), config_.never_send, kSpillBatch, out));
      more = round.more;
      full = round.full;
      stuck = !round.more && allowance_.draining();
      return absl::OkStatus();
    });
    if (full && !full_reported_.exchange(true)) {
      LOG_WARN("dsm node %u: over its memory allowance and every memory node is full", config_.self);
    }
  }
}

absl::Status DsmNode::health() const {
  absl::MutexLock l(&state_mu_);
  return failure_;
}

PageState DsmNode::page_state(uint64_t page) const {
  absl::MutexLock l(&mu_);
  return page < engine_->num_pages() ? engine_->state(page) : PageState::kInvalid;
}

std::vector<uint64_t> DsmNode::OwnedPagesPerNode() const {
  absl::MutexLock l(&mu_);
  return engine_->OwnedPagesPerNode();
}

std::string DsmNode::FormatStats(size_t hot_n) const {
  std::string resident;
  {
    absl::MutexLock l(&mu_);
    if (resident_ && allowance_.allowance() != 0) {
      resident = absl::StrFormat("  resident pages %u (peak %u), allowance %u, memory nodes' capacity %u\n",
                                 resident_->count(), resident_->peak(), allowance_.allowance(), allowance_.capacity());
    }
  }
  return absl::StrFormat("dsm node %u statistics:\n%s%s", config_.self, resident, stats_->Format(hot_n));
}

void DsmNode::Fail(const absl::Status& why) {
  {
    absl::MutexLock l(&state_mu_);
    if (!failure_.ok()) return;
    failure_ = why;
  }
  LOG_ERROR("dsm node %u: fatal: %s", config_.self, why.ToString());
  if (config_.on_error) config_.on_error(why);
}

void DsmNode::RouteLocked(std::vector<Message>& out, std::deque<Message>* local, std::vector<NodeId>* touched) {
  for (auto& m : out) {
    if (m.dst == config_.self) {
      local->push_back(std::move(m));
      continue;
    }
    const NodeId dst = m.dst;
    const MsgType type = m.type;
    const uint64_t page = m.page;
    absl::Status s = transport_->Enqueue(dst, std::move(m));
    if (!s.ok()) {
      // Not fatal by itself: a lost peer is reported by its receiver (unless it said LEAVE first), a send that
      // timed out closes the connection with that reason, and a lost request ends in its deadline.
      if (!stopping_) {
        LOG_WARN("dsm node %u: cannot send %s for page %#x to node %u: %s", config_.self, MsgTypeName(type), page,
                 dst, s.ToString());
      }
      continue;
    }
    if (std::find(touched->begin(), touched->end(), dst) == touched->end()) touched->push_back(dst);
  }
}

void DsmNode::FlushTouched(std::vector<NodeId>* touched) {
  for (NodeId dst : *touched) {
    absl::Status s = transport_->Flush(dst);
    if (!s.ok() && !stopping_) LOG_WARN("dsm node %u: flush to node %u: %s", config_.self, dst, s.ToString());
  }
  touched->clear();
}

template <typename Step>
void DsmNode::RunStep(NodeId peer, Step&& step) {
  std::deque<Message> local;
  std::vector<NodeId> touched;
  absl::Status s;
  bool wake_spiller = false;
  {
    absl::MutexLock l(&mu_);
    std::vector<Message> out;
    s = step(engine_.get(), &out);
    RouteLocked(out, &local, &touched);
    dispatching_.fetch_add(1);
    wake_spiller =
        spill_idle_.load(std::memory_order_relaxed) && resident_ && resident_->count() > allowance_.allowance();
  }
  if (wake_spiller) KickSpiller();
  if (!s.ok()) {
    if (peer != kNoNode) transport_->ClosePeer(peer, s);
    Fail(s);
  }
  FlushTouched(&touched);
  // Messages to this node (the home is manager and owner of most pages) go straight back into the engine, on this
  // thread, without recursion.
  while (!local.empty()) {
    Message m = std::move(local.front());
    local.pop_front();
    {
      absl::MutexLock l(&mu_);
      std::vector<Message> out;
      s = engine_->OnMessage(m, absl::Now(), &out);
      RouteLocked(out, &local, &touched);
    }
    if (!s.ok()) Fail(s);
    FlushTouched(&touched);
  }
  dispatching_.fetch_sub(1);
}

absl::Status DsmNode::PinPage(uint64_t page) {
  if (page * kPageSize >= size_) return absl::OutOfRangeError(absl::StrFormat("pin: page %#x is past the end", page));
  const absl::Time deadline = absl::Now() + config_.request_timeout;
  auto* word = reinterpret_cast<uint64_t*>(base_ + page * kPageSize);
  while (true) {
    // A locked OR of zero: a write access (so a write fault takes ownership) that no concurrent writer can lose.
    __atomic_fetch_or(word, 0, __ATOMIC_SEQ_CST);
    {
      absl::MutexLock l(&mu_);
      if (engine_->Pin(page).ok()) return absl::OkStatus();
    }
    RETURN_IF_ERROR(health());
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrFormat("pin: page %#x not held here within %s", page, absl::FormatDuration(config_.request_timeout)));
    }
    // Another node took the page between the access and the pin (or an operation is finishing): try again.
    absl::SleepFor(absl::Microseconds(50));
  }
}

void DsmNode::UnpinPage(uint64_t page) {
  if (stopped_.load()) return;  // no peer is served any more: nothing waits for the page
  RunStep(kNoNode, [page](ProtocolEngine* e, std::vector<Message>* out) { return e->Unpin(page, absl::Now(), out); });
}

void DsmNode::OnPeerMessage(NodeId peer, Message msg) {
  if (msg.type == MsgType::kLeave) {
    LOG_INFO("dsm node %u: node %u is leaving", config_.self, peer);
    absl::MutexLock l(&state_mu_);
    departed_.insert(peer);
    return;
  }
  if (msg.type == MsgType::kUser) {
    if (config_.on_user_message) config_.on_user_message(peer, std::move(msg.payload));
    return;
  }
  RunStep(peer, [&msg](ProtocolEngine* e, std::vector<Message>* out) {
    return e->OnMessage(msg, absl::Now(), out);
  });
}

void DsmNode::OnPeerClosed(NodeId peer, const absl::Status& why) {
  if (stopping_) return;
  {
    absl::MutexLock l(&state_mu_);
    if (departed_.contains(peer)) {
      LOG_INFO("dsm node %u: node %u left", config_.self, peer);
      return;
    }
  }
  Fail(absl::UnavailableError(absl::StrFormat("lost node %u: %s", peer, why.ToString())));
}

void DsmNode::FaultLoop() {
  FaultEvent events[64];
  absl::Time next_tick = absl::Now();
  while (!stopping_) {
    pollfd fds[2] = {{memory_->uffd(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    const int wait_ms =
        static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(next_tick - absl::Now()) + 1, 0, 1000));
    int n = ::poll(fds, 2, wait_ms);
    if (n < 0 && errno != EINTR) {
      Fail(ErrnoStatus("poll userfaultfd"));
      return;
    }
    if (stopping_) return;
    if (n > 0 && (fds[0].revents & POLLIN)) {
      auto got = memory_->ReadFaults(events);
      if (!got.ok()) {
        Fail(got.status());
        return;
      }
      for (size_t i = 0; i < *got; ++i) {
        const FaultEvent ev = events[i];
        if (spilling_.load(std::memory_order_relaxed)) {
          // Far over the memory allowance: spill a batch before taking more (see MemoryAllowance::FarOver).
          RunStep(kNoNode, [this](ProtocolEngine* e, std::vector<Message>* out) {
            mu_.AssertHeld();
            if (!allowance_.FarOver(*resident_)) return absl::OkStatus();
            return allowance_.Step(e, resident_.get(), config_.never_send, kSpillBatch, out).status();
          });
        }
        RunStep(kNoNode, [ev](ProtocolEngine* e, std::vector<Message>* out) {
          return e->OnFault(ev.page, ev.write, ev.wp, absl::Now(), out);
        });
      }
    }
    absl::Time now = absl::Now();
    if (now >= next_tick) next_tick = Tick(now);
  }
}

// Request deadlines, on the fault thread: checked when the earliest one is due, and at least once a second (a
// request another thread started meanwhile, a pin or a manager operation, is seen within a second of its
// deadline). An idle node's fault thread so wakes once a second, not every 20 ms.
absl::Time DsmNode::Tick(absl::Time now) {
  absl::Status s;
  absl::Time next;
  {
    absl::MutexLock l(&mu_);
    s = engine_->CheckTimeouts(now);
    next = engine_->NextDeadline();
  }
  if (!s.ok()) Fail(s);
  return std::clamp(next, now + absl::Milliseconds(1), now + absl::Seconds(1));
}

// Heartbeats and silent links, on a thread of their own that takes no protocol lock: every quarter heartbeat
// interval, so a heartbeat leaves at most 1.25 intervals after the last message on the link.
void DsmNode::LivenessLoop() {
  const absl::Duration period = std::max(config_.heartbeat_interval / 4, absl::Milliseconds(5));
  absl::MutexLock l(&liveness_mu_);
  while (!stopping_.load()) {
    liveness_mu_.AwaitWithTimeout(absl::Condition(
                                      +[](std::atomic<bool>* stop) { return stop->load(); }, &stopping_),
                                  period);
    if (stopping_.load()) return;
    CheckLinks(absl::Now());
  }
}

void DsmNode::CheckLinks(absl::Time now) {
  for (const auto& ch : transport_->Channels()) {
    if (ch->closed()) continue;
    {
      absl::MutexLock l(&state_mu_);
      if (departed_.contains(ch->peer())) continue;
    }
    if (now - ch->last_receive() > config_.peer_timeout) {
      absl::Status lost = absl::DeadlineExceededError(absl::StrFormat(
          "node %u silent for %s (peer timeout %s)", ch->peer(), absl::FormatDuration(now - ch->last_receive()),
          absl::FormatDuration(config_.peer_timeout)));
      ch->Close(lost);  // its receiver reports through OnPeerClosed
      continue;
    }
    if (now - ch->last_send() >= config_.heartbeat_interval) {
      Message hb;
      hb.type = MsgType::kHeartbeat;
      hb.dst = ch->peer();
      (void)ch->Send(hb, Lane::kFault);
    }
  }
}

absl::Status DsmNode::SendUserMessage(NodeId to, std::vector<uint8_t> payload, Lane lane) {
  Message m;
  m.type = MsgType::kUser;
  m.dst = to;
  m.payload = std::move(payload);
  return transport_->Send(to, m, lane);
}

void DsmNode::SendLeaveNotices() {
  Message m;
  m.type = MsgType::kLeave;
  for (NodeId p : transport_->Peers()) {
    m.dst = p;
    (void)transport_->Send(p, m, Lane::kFault);
  }
}

absl::Status DsmNode::Leave(absl::Duration timeout) {
  {
    // A request can outlive its access: a read-ahead copy may have resolved the fault before the request's own
    // answer (without data) arrived. The accessors are stopped, so those answers are all that is left to wait for.
    absl::MutexLock l(&mu_);
    if (!mu_.AwaitWithTimeout(
            absl::Condition(+[](ProtocolEngine* e) { return e->pending_requests() == 0; }, engine_.get()), timeout)) {
      return absl::DeadlineExceededError("leave: requests still unanswered");
    }
  }
  absl::Status begun;
  RunStep(kNoNode, [&begun](ProtocolEngine* e, std::vector<Message>* out) {
    begun = e->BeginLeave(out);
    return absl::OkStatus();
  });
  RETURN_IF_ERROR(begun);
  // A node holding many pages (a memory node) hands them back for as long as the managers keep taking them: the
  // timeout bounds a stall, not the whole hand-back.
  bool done = false;
  size_t left = SIZE_MAX;
  absl::Time progress = absl::Now();
  while (!done && health().ok()) {
    absl::MutexLock l(&mu_);
    done = mu_.AwaitWithTimeout(absl::Condition(
                                    +[](ProtocolEngine* e) { return e->leave_complete(); }, engine_.get()),
                                absl::Milliseconds(100));
    if (done) break;
    if (engine_->pages_evicting() < left) {
      left = engine_->pages_evicting();
      progress = absl::Now();
    } else if (absl::Now() - progress > timeout) {
      break;
    }
  }
  RETURN_IF_ERROR(health());
  if (!done) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "leave: the managers took no page back for %s (%u pages still held)", absl::FormatDuration(timeout), left));
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (dispatching_.load() != 0 && absl::Now() < deadline) absl::SleepFor(absl::Microseconds(100));
  Stop();
  return absl::OkStatus();
}

void DsmNode::Stop() {
  if (stopped_.exchange(true)) return;
  if (health().ok()) {
    SendLeaveNotices();
    // On an emulated link the notice waits in the sender's queue for its emulated time: let it out before
    // the connections close, or the peer sees a lost node instead of one that left.
    for (const auto& ch : transport_->Channels()) (void)ch->Drain(absl::Seconds(1));
  }
  {
    absl::MutexLock l(&liveness_mu_);  // wakes the liveness thread's wait
    stopping_ = true;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(wake_.get(), &one, sizeof(one));
  if (fault_thread_.joinable()) fault_thread_.join();
  if (liveness_thread_.joinable()) liveness_thread_.join();
  KickSpiller();  // its wait ends at once; it sees stopping_
  if (spill_thread_.joinable()) spill_thread_.join();
  transport_->Shutdown();
  // Threads still blocked on a fault of this mapping are released; their memory is no longer coherent.
  memory_->Unregister();
  if (config_.print_stats_at_exit) std::fprintf(stderr, "%s", FormatStats().c_str());
}

}  // namespace coalesce::dsm
