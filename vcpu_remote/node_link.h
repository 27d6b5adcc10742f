// The cross-node channel of a coalesced VM on top of the DSM node that keeps its RAM coherent: node
// messages (node_message.h) ride the DSM connection of each node pair as user messages. Besides sending,
// it implements the one request/response exchange, a remote vCPU's forwarded I/O, with a timeout.
//
// Threads: handlers run on the DSM receiver thread of the sending peer; ForwardIo blocks the calling vCPU
// thread until the reply arrives (or the timeout / a stop). Malformed messages are logged and counted.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "dsm/dsm_node.h"
#include "vcpu_remote/node_message.h"

namespace coalesce {

class NodeLink final {
 public:
  // Called for every well-formed message except IoReply (consumed by ForwardIo). Runs on a DSM thread.
  using MessageHandler = std::function<void(uint16_t from, node_msg::NodeMessage message)>;

  // Creates the DSM node over `memfd`/`base` (the guest RAM mapping) with `config` (on_user_message is
  // taken over by the link).
  static absl::StatusOr<std::unique_ptr<NodeLink>> Create(dsm::DsmNodeConfig config, int memfd, uint8_t* base,
                                                          uint64_t size, MessageHandler handler);
  ~NodeLink();

  absl::Status Send(uint16_t to, const node_msg::NodeMessage& message);
  // A remote vCPU's access, served by the home node. Returns the read bytes (empty for writes).
  absl::StatusOr<std::vector<uint8_t>> ForwardIo(uint32_t vcpu_id, node_msg::IoKind kind, uint64_t address,
                                                 uint8_t size, std::span<const uint8_t> write_data,
                                                 absl::Duration timeout);
  // Wakes every ForwardIo waiter with an error (the VM is stopping).
  void CancelWaiters();

  [[nodiscard]] dsm::DsmNode& dsm() { return *dsm_; }
  [[nodiscard]] uint64_t malformed() const { return malformed_.load(); }
  [[nodiscard]] uint64_t forwarded_io() const { return forwarded_io_.load(); }

 private:
  explicit NodeLink(MessageHandler handler) : handler_(std::move(handler)) {}
  void OnUserMessage(uint16_t from, std::vector<uint8_t> payload);

  MessageHandler handler_;
  std::unique_ptr<dsm::DsmNode> dsm_;
  std::atomic<uint64_t> malformed_{0};
  std::atomic<uint64_t> forwarded_io_{0};
  std::atomic<uint64_t> next_request_{1};

  absl::Mutex mu_;
  std::map<uint64_t, std::optional<std::vector<uint8_t>>> pending_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce
