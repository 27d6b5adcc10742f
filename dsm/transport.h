// The DSM data plane of one node: a TCP listener plus one PeerChannel per peer node (one connection per pair).
// A connection starts with a HELLO each way (node id, page count, page size, wire version); a peer that does not
// match is refused with a logged reason. With a data-plane secret (Options::secret) each HELLO also carries a
// random nonce, both ends derive this connection's keys and prove them with one sealed frame each (frame_cipher.h),
// and every later message is sealed; a peer without the key, or a plaintext one, is refused at the handshake.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "dsm/peer_channel.h"

namespace coalesce::dsm {

class Transport final {
 public:
  struct Options {
    NodeId self = 0;
    uint64_t num_pages = 0;
    std::string listen_address = "0.0.0.0";
    uint16_t listen_port = 0;  // 0: any free port (see port())
    LinkEmulation link;
    absl::Duration io_timeout = absl::Seconds(5);  // handshake reads and blocked sends
    std::optional<DataPlaneSecret> secret;  // set: the data plane is encrypted and authenticated
    std::vector<PageSpan> never_send;       // pages whose contents no message may carry (PeerChannel)
  };
  struct Callbacks {
    std::function<void(NodeId peer, Message msg)> on_message;
    std::function<void(NodeId peer, const absl::Status& why)> on_closed;
    std::function<void(NodeId peer)> on_peer_up;
  };

  static absl::StatusOr<std::unique_ptr<Transport>> Create(const Options& options, DsmStats* stats,
                                                           Callbacks callbacks);
  ~Transport();

  [[nodiscard]] uint16_t port() const { return port_; }
  // Connects to `peer` (retrying refused connections until `timeout`) and runs the handshake.
  absl::Status Connect(NodeId peer, const std::string& host, uint16_t port, absl::Duration timeout);
  absl::Status Send(NodeId dst, const Message& m, Lane lane = Lane::kFault);
  // Ordered fault lane (see PeerChannel::Enqueue / Flush).
  absl::Status Enqueue(NodeId dst, Message m);
  absl::Status Flush(NodeId dst);
  // Waits until every listed peer has a live connection.
  absl::Status WaitForPeers(const std::vector<NodeId>& peers, absl::Duration timeout);
  [[nodiscard]] std::vector<NodeId> Peers() const;
  [[nodiscard]] std::vector<std::shared_ptr<PeerChannel>> Channels() const;
  void ClosePeer(NodeId peer, const absl::Status& why);
  // Stops accepting and closes every connection; the callbacks may still run until it returns.
  void Shutdown();

 private:
  Transport(const Options& options, DsmStats* stats, Callbacks callbacks, UniqueFd listener, uint16_t port)
      : options_(options), stats_(stats), cb_(std::move(callbacks)), listener_(std::move(listener)), port_(port) {}
  void AcceptLoop();
  absl::Status Handshake(int fd, NodeId expected_peer, bool initiator, NodeId* peer_out, ChannelCipher* cipher);
  absl::Status AddChannel(NodeId peer, UniqueFd sock, ChannelCipher cipher);
  std::shared_ptr<PeerChannel> Find(NodeId peer) const;

  Options options_;
  DsmStats* stats_;
  Callbacks cb_;
  UniqueFd listener_;
  uint16_t port_;
  std::thread acceptor_;
  mutable absl::Mutex mu_;
  std::map<NodeId, std::shared_ptr<PeerChannel>> channels_ ABSL_GUARDED_BY(mu_);
  // Closed channels replaced by a reconnecting peer, destroyed at Shutdown (their threads may still be exiting).
  std::vector<std::shared_ptr<PeerChannel>> retired_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce::dsm
