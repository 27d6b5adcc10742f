#include "dsm/transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "dsm/frame_io.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/base/thread_name.h"

namespace coalesce::dsm {
namespace {

absl::Status ParseAddress(const std::string& host, uint16_t port, sockaddr_in* out) {
  std::memset(out, 0, sizeof(*out));
  out->sin_family = AF_INET;
  out->sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &out->sin_addr) == 1) return absl::OkStatus();
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat("cannot resolve %s", host));
  }
  out->sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
  ::freeaddrinfo(res);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> Transport::Create(const Options& options, DsmStats* stats,
                                                             Callbacks callbacks) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("socket");
  UniqueFd listener(fd);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr;
  RETURN_IF_ERROR(ParseAddress(options.listen_address, options.listen_port, &addr));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    return ErrnoStatus(absl::StrFormat("bind %s:%u", options.listen_address, options.listen_port));
  }
  if (::listen(fd, 64) < 0) return ErrnoStatus("listen");
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return ErrnoStatus("getsockname");
  auto t = std::unique_ptr<Transport>(
      new Transport(options, stats, std::move(callbacks), std::move(listener), ntohs(addr.sin_port)));
  t->acceptor_ = StartNamedThread("dsm-accept", [p = t.get()] { p->AcceptLoop(); });
  return t;
}

Transport::~Transport() { Shutdown(); }

absl::Status Transport::Handshake(int fd, NodeId expected_peer, bool initiator, NodeId* peer_out,
                                  ChannelCipher* cipher) {
  timeval tv = absl::ToTimeval(options_.io_timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const bool sealed = options_.secret.has_value();
  HelloNonce my_nonce{};
  if (sealed) {
    ASSIGN_OR_RETURN(my_nonce, RandomHelloNonce());
  }
  const WireHeader mine =
      MakeHeader(MsgType::kHello, options_.self, 0, static_cast<uint32_t>(options_.num_pages),
                 sealed ? kFlagSealedChannel : 0, sealed ? kHelloNonceSize : 0, kPageSize);
  auto send_hello = [&]() -> absl::Status {
    RETURN_IF_ERROR(SendAll(fd, &mine, sizeof(mine)));
    return sealed ? SendAll(fd, my_nonce.data(), my_nonce.size()) : absl::OkStatus();
  };
  if (initiator) RETURN_IF_ERROR(send_hello());
  WireHeader theirs;
  RETURN_IF_ERROR(ReadFull(fd, &theirs, sizeof(theirs), /*message_start=*/true));
  RETURN_IF_ERROR(ValidateHeader(theirs));
  if (static_cast<MsgType>(theirs.type) != MsgType::kHello) return absl::DataLossError("expected HELLO");
  HelloNonce their_nonce{};
  const bool they_seal = (theirs.flags & kFlagSealedChannel) != 0;
  if (they_seal) RETURN_IF_ERROR(ReadFull(fd, their_nonce.data(), their_nonce.size(), /*message_start=*/false));
  // The responder answers before judging, so that a refused initiator learns why from the HELLO itself.
  if (!initiator) RETURN_IF_ERROR(send_hello());
  if (they_seal != sealed) {
    return absl::PermissionDeniedError(
        sealed ? absl::StrFormat("node %u offers a plaintext data plane; this node's is encrypted with the VM's "
                                 "data-plane key",
                                 theirs.src_node)
               : absl::StrFormat("node %u offers an encrypted data plane; this node has no data-plane key",
                                 theirs.src_node));
  }
  if (theirs.arg != options_.num_pages || theirs.seq != kPageSize) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "peer %u has %u pages of %u bytes, this node %u of %u", theirs.src_node, theirs.arg, theirs.seq,
        options_.num_pages, kPageSize));
  }
  if (theirs.src_node == options_.self) return absl::FailedPreconditionError("peer has this node's id");
  if (expected_peer != kNoNode && theirs.src_node != expected_peer) {
    return absl::FailedPreconditionError(
        absl::StrFormat("expected node %u, the peer says it is node %u", expected_peer, theirs.src_node));
  }
  if (sealed) {
    // Keys for this connection only, then key confirmation: each side's first sealed frame is a HEARTBEAT, and a
    // peer whose frame does not open does not hold the VM's key (or someone altered the HELLOs).
    const NodeId initiator_node = initiator ? options_.self : theirs.src_node;
    const NodeId responder_node = initiator ? theirs.src_node : options_.self;
    ASSIGN_OR_RETURN(*cipher, DeriveChannelCipher(*options_.secret, initiator, initiator_node, responder_node,
                                                  initiator ? my_nonce : their_nonce,
                                                  initiator ? their_nonce : my_nonce));
    std::vector<uint8_t> frame;
    RETURN_IF_ERROR(cipher->send->Seal(MakeHeader(MsgType::kHeartbeat, options_.self, 0), {}, &frame));
    RETURN_IF_ERROR(SendAll(fd, frame.data(), frame.size()));
    WireHeader confirm;
    std::vector<uint8_t> payload;
    MessageSource exact(fd, /*buffered=*/false);  // what follows the confirmation is the channel's
    if (absl::Status s = ReadMessage(exact, theirs.src_node, cipher->receive.get(), &frame, &confirm, &payload);
        !s.ok()) {
      return absl::PermissionDeniedError(
          absl::StrFormat("node %u failed the data-plane key check: %s", theirs.src_node, s.message()));
    }
    if (static_cast<MsgType>(confirm.type) != MsgType::kHeartbeat) {
      return absl::DataLossError(absl::StrFormat("node %u sent %s as its key confirmation", theirs.src_node,
                                                 MsgTypeName(static_cast<MsgType>(confirm.type))));
    }
  }
  tv = timeval{0, 0};  // from now on silence is detected by heartbeats, not by read timeouts
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  *peer_out = theirs.src_node;
  return absl::OkStatus();
}

absl::Status Transport::AddChannel(NodeId peer, UniqueFd sock, ChannelCipher cipher) {
  RETURN_IF_ERROR(PeerChannel::ConfigureSocket(sock.get(), options_.io_timeout));
  PeerChannel::Callbacks cb{cb_.on_message, cb_.on_closed};
  auto ch = std::make_shared<PeerChannel>(options_.self, peer, std::move(sock), std::move(cipher), options_.link,
                                          stats_, cb, options_.never_send);
  {
    absl::MutexLock l(&mu_);
    if (shut_down_) return absl::CancelledError("transport shut down");
    auto it = channels_.find(peer);
    if (it != channels_.end()) {
      if (!it->second->closed()) {
        return absl::AlreadyExistsError(absl::StrFormat("node %u is already connected", peer));
      }
      retired_.push_back(it->second);
    }
    channels_[peer] = ch;
    ch->Start();
  }
  LOG_INFO("dsm node %u: connected to node %u", options_.self, peer);
  if (cb_.on_peer_up) cb_.on_peer_up(peer);
  return absl::OkStatus();
}

absl::Status Transport::Connect(NodeId peer, const std::string& host, uint16_t port, absl::Duration timeout) {
  sockaddr_in addr;
  RETURN_IF_ERROR(ParseAddress(host, port, &addr));
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoStatus("socket");
    UniqueFd sock(fd);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      NodeId got;
      ChannelCipher cipher;
      RETURN_IF_ERROR(Handshake(fd, peer, /*initiator=*/true, &got, &cipher));
      return AddChannel(got, std::move(sock), std::move(cipher));
    }
    const int err = errno;
    if ((err != ECONNREFUSED && err != ENETUNREACH && err != EHOSTUNREACH && err != ETIMEDOUT) ||
        absl::Now() > deadline) {
      return ErrnoStatus(absl::StrFormat("connect to node %u at %s:%u", peer, host, port), err);
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void Transport::AcceptLoop() {
  for (;;) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      absl::MutexLock l(&mu_);
      if (!shut_down_) LOG_ERROR("dsm node %u: accept failed: %s", options_.self, std::strerror(errno));
      return;
    }
    UniqueFd sock(fd);
    NodeId peer = kNoNode;
    ChannelCipher cipher;
    absl::Status s = Handshake(fd, kNoNode, /*initiator=*/false, &peer, &cipher);
    if (s.ok()) s = AddChannel(peer, std::move(sock), std::move(cipher));
    if (!s.ok()) LOG_WARN("dsm node %u: refused a connection: %s", options_.self, s.ToString());
  }
}

std::shared_ptr<PeerChannel> Transport::Find(NodeId peer) const {
  absl::MutexLock l(&mu_);
  auto it = channels_.find(peer);
  return it == channels_.end() ? nullptr : it->second;
}

absl::Status Transport::Enqueue(NodeId dst, Message m) {
  auto ch = Find(dst);
  if (ch == nullptr) return absl::UnavailableError(absl::StrFormat("no connection to node %u", dst));
  return ch->Enqueue(std::move(m));
}

absl::Status Transport::Flush(NodeId dst) {
  auto ch = Find(dst);
  if (ch == nullptr) return absl::UnavailableError(absl::StrFormat("no connection to node %u", dst));
  return ch->Flush();
}

absl::Status Transport::Send(NodeId dst, const Message& m, Lane lane) {
  std::shared_ptr<PeerChannel> ch;
  {
    absl::MutexLock l(&mu_);
    auto it = channels_.find(dst);
    if (it == channels_.end()) return absl::UnavailableError(absl::StrFormat("no connection to node %u", dst));
    ch = it->second;
  }
  return ch->Send(m, lane);
}

absl::Status Transport::WaitForPeers(const std::vector<NodeId>& peers, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    bool all_up = true;
    {
      absl::MutexLock l(&mu_);
      for (NodeId p : peers) {
        auto it = channels_.find(p);
        if (it == channels_.end() || it->second->closed()) all_up = false;
      }
    }
    if (all_up) return absl::OkStatus();
    if (absl::Now() > deadline) return absl::DeadlineExceededError("peers did not connect in time");
    absl::SleepFor(absl::Milliseconds(5));
  }
}

std::vector<NodeId> Transport::Peers() const {
  absl::MutexLock l(&mu_);
  std::vector<NodeId> out;
  for (const auto& [id, ch] : channels_) {
    if (!ch->closed()) out.push_back(id);
  }
  return out;
}

std::vector<std::shared_ptr<PeerChannel>> Transport::Channels() const {
  absl::MutexLock l(&mu_);
  std::vector<std::shared_ptr<PeerChannel>> out;
  for (const auto& [id, ch] : channels_) out.push_back(ch);
  return out;
}

void Transport::ClosePeer(NodeId peer, const absl::Status& why) {
  std::shared_ptr<PeerChannel> ch;
  {
    absl::MutexLock l(&mu_);
    auto it = channels_.find(peer);
    if (it == channels_.end()) return;
    ch = it->second;
  }
  ch->Close(why);
}

void Transport::Shutdown() {
  std::map<NodeId, std::shared_ptr<PeerChannel>> channels;
  std::vector<std::shared_ptr<PeerChannel>> retired;
  {
    absl::MutexLock l(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    channels.swap(channels_);
    retired.swap(retired_);
  }
  ::shutdown(listener_.get(), SHUT_RDWR);  // makes the blocked accept() return
  if (acceptor_.joinable()) acceptor_.join();
  for (auto& [id, ch] : channels) ch->Close(absl::CancelledError("node shutting down"));
  for (auto& [id, ch] : channels) ch->CloseAndJoin(absl::CancelledError("node shutting down"));
  for (auto& ch : retired) ch->CloseAndJoin(absl::CancelledError("node shutting down"));
}

}  // namespace coalesce::dsm
