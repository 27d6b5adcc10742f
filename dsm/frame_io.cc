#include "dsm/frame_io.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "hypervisor/base/errno_status.h"

namespace coalesce::dsm {

namespace {

// One recv of up to `cap` bytes into `buf`, `done` of the message's `len` bytes already read: how many came, or
// why none will (an orderly close between messages is Unavailable, inside one DataLoss).
absl::StatusOr<size_t> RecvSome(int fd, void* buf, size_t cap, size_t done, size_t len, bool message_start) {
  for (;;) {
    ssize_t n = ::recv(fd, buf, cap, 0);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) {
      if (done == 0 && message_start) return absl::UnavailableError("connection closed by peer");
      return absl::DataLossError(absl::StrFormat("truncated message: connection closed after %u of %u bytes",
                                                 done, len));
    }
    if (errno != EINTR) return ErrnoStatus("recv");
  }
}

}  // namespace

absl::Status ReadFull(int fd, void* buf, size_t len, bool message_start) {
  auto* p = static_cast<uint8_t*>(buf);
  for (size_t done = 0; done < len;) {
    absl::StatusOr<size_t> got = RecvSome(fd, p + done, len - done, done, len, message_start);
    if (!got.ok()) return got.status();
    done += *got;
  }
  return absl::OkStatus();
}

absl::Status SendAll(int fd, const void* buf, size_t len) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("send");
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status MessageSource::ReadFull(void* dst, size_t len, bool message_start) {
  if (!buffered_) return dsm::ReadFull(fd_, dst, len, message_start);
  auto* out = static_cast<uint8_t*>(dst);
  size_t done = 0;
  while (done < len) {
    if (head_ < tail_) {
      const size_t n = std::min(len - done, tail_ - head_);
      std::memcpy(out + done, buf_.data() + head_, n);
      head_ += n;
      done += n;
      continue;
    }
    head_ = tail_ = 0;
    if (len - done >= buf_.size()) {  // a large remainder goes straight to its destination
      return dsm::ReadFull(fd_, out + done, len - done, message_start && done == 0);
    }
    absl::StatusOr<size_t> got = RecvSome(fd_, buf_.data(), buf_.size(), done, len, message_start);
    if (!got.ok()) return got.status();
    tail_ = *got;
  }
  return absl::OkStatus();
}

absl::Status ReadMessage(MessageSource& in, NodeId peer, FrameOpener* opener, std::vector<uint8_t>* scratch,
                         WireHeader* header, std::vector<uint8_t>* payload) {
  if (opener == nullptr) {
    if (absl::Status s = in.ReadFull(header, sizeof(*header), /*message_start=*/true); !s.ok()) return s;
    if (absl::Status s = ValidatePeerHeader(*header, peer); !s.ok()) return s;
    payload->resize(header->payload_len);
    if (header->payload_len == 0) return absl::OkStatus();
    return in.ReadFull(payload->data(), header->payload_len, /*message_start=*/false);
  }
  uint8_t len_bytes[kFrameLengthSize];
  if (absl::Status s = in.ReadFull(len_bytes, sizeof(len_bytes), /*message_start=*/true); !s.ok()) return s;
  const uint32_t length = uint32_t{len_bytes[0]} | uint32_t{len_bytes[1]} << 8 | uint32_t{len_bytes[2]} << 16 |
                          uint32_t{len_bytes[3]} << 24;
  if (absl::Status s = FrameOpener::CheckLength(length); !s.ok()) return s;
  scratch->resize(length);
  if (absl::Status s = in.ReadFull(scratch->data(), length, /*message_start=*/false); !s.ok()) return s;
  if (absl::Status s = opener->Open(length, *scratch, header, payload); !s.ok()) return s;
  if (absl::Status s = ValidatePeerHeader(*header, peer); !s.ok()) return s;
  if (header->payload_len != payload->size()) {
    return absl::DataLossError(absl::StrFormat("%s header says %u payload bytes, the frame holds %u",
                                               MsgTypeName(static_cast<MsgType>(header->type)), header->payload_len,
                                               payload->size()));
  }
  return absl::OkStatus();
}

}  // namespace coalesce::dsm
