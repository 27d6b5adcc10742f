// One TCP connection to one peer: the DSM data plane for that node pair.
//
// Two lanes share the connection. Fault-lane messages (every protocol message) are written at once by the thread
// that produced them, with one writev() of header + raw page. Bulk-lane messages (application payloads up to
// kMaxBulkPayload) go through a queue and a sender thread that writes one only when the kernel holds less than
// TCP_NOTSENT_LOWAT unsent bytes, so a fault message waits behind at most one bulk message plus that low-water
// mark, never behind a backlog. With link emulation on, all messages pass the sender thread, which releases each at
// its emulated time, fault lane first.
//
// With a ChannelCipher (the VM has a data-plane secret) every message travels as one sealed frame
// (frame_cipher.h): encrypted, authenticated and numbered, so an altered, replayed or reordered frame is refused.
//
// Threads: a receiver (blocking reads, opens sealed frames, validates each header, hands messages to on_message)
// and a sender. Anything malformed or forged closes the connection with the reason (logged, counted in
// DsmStats::frames_rejected); on_closed is called exactly once, on the receiver.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <utility>
#include <vector>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dsm/dsm_stats.h"
#include "dsm/frame_cipher.h"
#include "dsm/link_emulation.h"
#include "dsm/protocol_engine.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce::dsm {

enum class Lane { kFault, kBulk };
using PageSpan = std::pair<uint64_t, uint64_t>;  // pages [first, end)
inline constexpr uint32_t kMaxBulkPayload = 64 * 1024;
inline constexpr int kNotSentLowWater = 16 * 1024;

class PeerChannel final {
 public:
  struct Callbacks {
    std::function<void(NodeId peer, Message msg)> on_message;
    std::function<void(NodeId peer, const absl::Status& why)> on_closed;
  };

  // An empty `cipher` (both members null) sends and receives plain messages. `never_send` lists page ranges
  // [first, end) whose contents must never leave this node: a message carrying one is refused at the wire
  // (counted in DsmStats::home_only_refusals) and the connection closed.
  PeerChannel(NodeId self, NodeId peer, UniqueFd sock, ChannelCipher cipher, const LinkEmulation& link,
              DsmStats* stats, Callbacks cb, std::vector<PageSpan> never_send = {});
  ~PeerChannel();
  PeerChannel(const PeerChannel&) = delete;
  PeerChannel& operator=(const PeerChannel&) = delete;

  void Start();
  // Unavailable once the connection is closed.
  absl::Status Send(const Message& m, Lane lane);
  // Fault lane, in order: Enqueue is cheap and meant to be called under the caller's lock (so the order of the
  // queue is the order of the caller's decisions); Flush, after that lock is released, writes whatever is queued.
  // Messages reach the socket in Enqueue order whichever thread flushes.
  absl::Status Enqueue(Message m);
  absl::Status Flush();
  // Waits until every message queued for the sender thread is on the socket (an emulated link holds messages
  // for their emulated time): a node that leaves must not close before its LEAVE notice is written. False on
  // timeout or a closed connection.
  bool Drain(absl::Duration timeout);
  // Changes the emulated link of what this node sends from now on. FailedPrecondition on a link started without
  // emulation (its messages take the direct path, which has no shaper).
  absl::Status SetLinkEmulation(const LinkEmulation& link);
  // Closes the connection; the receiver then reports `why` (the first reason given) through on_closed.
  void Close(const absl::Status& why);
  // Close() and wait for both threads. Never called from this channel's own threads.
  void CloseAndJoin(const absl::Status& why);

  [[nodiscard]] NodeId peer() const { return peer_; }
  [[nodiscard]] bool closed() const { return closed_.load(); }
  [[nodiscard]] absl::Time last_receive() const { return absl::FromUnixNanos(last_rx_ns_.load()); }
  [[nodiscard]] absl::Time last_send() const { return absl::FromUnixNanos(last_tx_ns_.load()); }

  // Sets TCP_NODELAY, TCP_NOTSENT_LOWAT and a send timeout on a connected socket.
  static absl::Status ConfigureSocket(int fd, absl::Duration send_timeout);

 private:
  struct Queued {
    Message msg;
    absl::Time release;
  };
  absl::Status WriteMessage(const Message& m);
  absl::Status WriteLocked(const Message& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  void ReceiveLoop();
  void SendLoop();
  void Kick();

  const NodeId self_;
  const NodeId peer_;
  UniqueFd sock_;
  const std::unique_ptr<FrameSealer> sealer_;  // used under write_mu_
  const std::unique_ptr<FrameOpener> opener_;  // used by the receiver thread only
  const std::vector<PageSpan> never_send_;
  UniqueFd wake_;  // eventfd: wakes the sender
  const bool emulate_;
  DsmStats* stats_;
  Callbacks cb_;
  absl::Mutex write_mu_;  // one message at a time on the socket; taken before queue_mu_
  std::vector<uint8_t> seal_buf_ ABSL_GUARDED_BY(write_mu_);
  absl::Mutex queue_mu_;
  std::deque<Queued> fault_q_ ABSL_GUARDED_BY(queue_mu_);  // emulated links only
  std::deque<Message> ordered_q_ ABSL_GUARDED_BY(queue_mu_);  // Enqueue()d, not yet flushed
  std::deque<Queued> bulk_q_ ABSL_GUARDED_BY(queue_mu_);
  LinkShaper shaper_ ABSL_GUARDED_BY(queue_mu_);
  absl::Mutex close_mu_;
  absl::Status close_reason_ ABSL_GUARDED_BY(close_mu_);
  std::atomic<bool> closed_{false};
  std::atomic<int64_t> unsent_{0};  // queued for the sender thread (emulated links, bulk lane), not yet written
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> last_rx_ns_;
  std::atomic<int64_t> last_tx_ns_;
  std::thread receiver_;
  std::thread sender_;
};

}  // namespace coalesce::dsm
