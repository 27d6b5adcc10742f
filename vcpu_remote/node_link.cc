#include "vcpu_remote/node_link.h"

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {

absl::StatusOr<std::unique_ptr<NodeLink>> NodeLink::Create(dsm::DsmNodeConfig config, int memfd, uint8_t* base,
                                                           uint64_t size, MessageHandler handler) {
  std::unique_ptr<NodeLink> link(new NodeLink(std::move(handler)));
  NodeLink* raw = link.get();
  config.on_user_message = [raw](dsm::NodeId from, std::vector<uint8_t> payload) {
    raw->OnUserMessage(from, std::move(payload));
  };
  ASSIGN_OR_RETURN(link->dsm_, dsm::DsmNode::Create(config, memfd, base, size));
  return link;
}

NodeLink::~NodeLink() {
  CancelWaiters();
  if (dsm_) dsm_->Stop();
}

absl::Status NodeLink::Send(uint16_t to, const node_msg::NodeMessage& message) {
  // Every node message is a few dozen bytes and most wait on an answer or deliver an interrupt: the fault
  // lane writes them at once from the sending thread instead of queueing them for the bulk sender thread.
  return dsm_->SendUserMessage(to, node_msg::Encode(message), dsm::Lane::kFault);
}

void NodeLink::OnUserMessage(uint16_t from, std::vector<uint8_t> payload) {
  absl::StatusOr<node_msg::NodeMessage> msg = node_msg::Decode(payload);
  if (!msg.ok()) {
    if (malformed_.fetch_add(1) < 10) LOG_WARN("node %u sent a malformed message: %s", from, msg.status().ToString());
    return;
  }
  if (auto* reply = std::get_if<node_msg::IoReply>(&*msg)) {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(reply->request_id);
    if (it == pending_.end() || it->second.has_value()) {
      malformed_.fetch_add(1);
      LOG_WARN("node %u answered unknown I/O request %u", from, reply->request_id);
      return;
    }
    it->second = std::move(reply->data);
    return;
  }
  handler_(from, *std::move(msg));
}

absl::StatusOr<std::vector<uint8_t>> NodeLink::ForwardIo(uint32_t vcpu_id, node_msg::IoKind kind, uint64_t address,
                                                         uint8_t size, std::span<const uint8_t> write_data,
                                                         absl::Duration timeout) {
  uint64_t id = next_request_.fetch_add(1);
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("the VM is stopping");
    pending_[id] = std::nullopt;
  }
  forwarded_io_.fetch_add(1, std::memory_order_relaxed);
  node_msg::IoRequest req{id, vcpu_id, kind, address, size, {write_data.begin(), write_data.end()}};
  if (absl::Status st = Send(0, req); !st.ok()) {
    absl::MutexLock lock(&mu_);
    pending_.erase(id);
    return st;
  }
  absl::MutexLock lock(&mu_);
  auto done = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return cancelled_ || pending_[id].has_value(); };
  bool ok = mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  auto node = pending_.extract(id);
  if (node.mapped().has_value()) return std::move(*node.mapped());
  if (cancelled_) return absl::CancelledError("the VM is stopping");
  (void)ok;
  return absl::DeadlineExceededError(
      absl::StrFormat("vcpu%u: the home node did not answer an I/O access at %#x within %s", vcpu_id, address,
                      absl::FormatDuration(timeout)));
}

void NodeLink::CancelWaiters() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

}  // namespace coalesce
