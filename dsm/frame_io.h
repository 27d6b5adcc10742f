// Blocking socket I/O of the data plane's messages, in one place for the handshake (transport.cc) and the
// channel's receive loop (peer_channel.cc): whole reads and writes, and reading one message either as a plain
// header + payload or as one sealed frame (frame_cipher.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "dsm/frame_cipher.h"
#include "dsm/wire_format.h"

namespace coalesce::dsm {

// Reads exactly `len` bytes. Unavailable on an orderly close before the first byte of a message (`message_start`),
// DataLoss on a close in the middle of one.
absl::Status ReadFull(int fd, void* buf, size_t len, bool message_start);
// Writes all of `buf` (MSG_NOSIGNAL: a peer that went away is an error, not a SIGPIPE).
absl::Status SendAll(int fd, const void* buf, size_t len);

// Where ReadMessage reads from. Unbuffered, it reads exactly what is asked (the handshake: what follows belongs
// to the channel that takes the socket over). Buffered, each recv takes whatever the socket holds, up to 64 KiB,
// so a message that arrived whole (header and page are sent in one sendmsg) costs one system call, not two: the
// receive loop, which owns the socket for the rest of its life.
class MessageSource final {
 public:
  MessageSource(int fd, bool buffered) : fd_(fd), buffered_(buffered) {
    if (buffered_) buf_.resize(kBufferBytes);
  }
  absl::Status ReadFull(void* dst, size_t len, bool message_start);

 private:
  static constexpr size_t kBufferBytes = 64 * 1024;
  int fd_;
  bool buffered_;
  std::vector<uint8_t> buf_;
  size_t head_ = 0, tail_ = 0;  // buf_[head_, tail_) is read from the socket and not consumed yet
};

// Reads one message from `peer` and checks its header (ValidatePeerHeader). With `opener`, the message is one
// sealed frame, opened (authenticated and decrypted) before anything in it is believed; `scratch` holds the
// ciphertext. Without, a plain header, validated before its payload length is trusted, then the payload.
absl::Status ReadMessage(MessageSource& in, NodeId peer, FrameOpener* opener, std::vector<uint8_t>* scratch,
                         WireHeader* header, std::vector<uint8_t>* payload);

}  // namespace coalesce::dsm
