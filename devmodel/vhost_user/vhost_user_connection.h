// The front end's end of one vhost-user socket: connects (retrying while the back end starts), sends messages
// with their file descriptors, and reads replies with a deadline. A back end that is silent past the deadline,
// closes the socket or answers out of protocol is an error naming the request, never a hang.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "devmodel/vhost_user/vhost_user_message.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce::vhost_user {

class Connection final {
 public:
  // Connects to the UNIX socket at `path`, retrying every 10 ms until `timeout` while the socket does not exist
  // or refuses. `still_starting` is asked between tries: an error from it (the back end exited) ends the wait.
  static absl::StatusOr<Connection> Connect(const std::string& path, absl::Duration timeout,
                                            const std::function<absl::Status()>& still_starting);

  // Sends one encoded message and `fds` with it.
  absl::Status Send(std::span<const uint8_t> message, std::span<const int> fds = {});
  // Reads the reply to `request`: its payload.
  absl::StatusOr<std::vector<uint8_t>> ReadReply(Request request);
  // Send + ReadReply + DecodeU64.
  absl::StatusOr<uint64_t> CallU64(Request request, std::span<const uint8_t> message);
  // Sends a message that asked for an ack (kFlagNeedReply) and checks the ack is 0.
  absl::Status SendAcked(Request request, std::span<const uint8_t> message, std::span<const int> fds = {});

  void set_reply_timeout(absl::Duration t) { reply_timeout_ = t; }

 private:
  explicit Connection(UniqueFd fd) : fd_(std::move(fd)) {}
  absl::Status ReadExactly(uint8_t* out, size_t n, absl::Time deadline, Request request);

  UniqueFd fd_;
  absl::Duration reply_timeout_ = absl::Seconds(10);
};

}  // namespace coalesce::vhost_user
