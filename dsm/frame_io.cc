#include "dsm/frame_io.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hypervisor/base/errno_status.h"

namespace coalesce::dsm {

absl::Status ReadFull(int fd, void* buf, size_t len, bool message_start) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::recv(fd, p + done, len - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      if (done == 0 && message_start) return absl::UnavailableError("connection closed by peer");
      return absl::DataLossError(absl::StrFormat("truncated message: connection closed after %u of %u bytes",
                                                 done, len));
    }
    if (errno == EINTR) continue;
    return ErrnoStatus("recv");
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

absl::Status ReadMessage(int fd, NodeId peer, FrameOpener* opener, std::vector<uint8_t>* scratch, WireHeader* header,
                         std::vector<uint8_t>* payload) {
  if (opener == nullptr) {
    if (absl::Status s = ReadFull(fd, header, sizeof(*header), /*message_start=*/true); !s.ok()) return s;
    if (absl::Status s = ValidatePeerHeader(*header, peer); !s.ok()) return s;
    payload->resize(header->payload_len);
    if (header->payload_len == 0) return absl::OkStatus();
    return ReadFull(fd, payload->data(), header->payload_len, /*message_start=*/false);
  }
  uint8_t len_bytes[kFrameLengthSize];
  if (absl::Status s = ReadFull(fd, len_bytes, sizeof(len_bytes), /*message_start=*/true); !s.ok()) return s;
  const uint32_t length = uint32_t{len_bytes[0]} | uint32_t{len_bytes[1]} << 8 | uint32_t{len_bytes[2]} << 16 |
                          uint32_t{len_bytes[3]} << 24;
  if (absl::Status s = FrameOpener::CheckLength(length); !s.ok()) return s;
  scratch->resize(length);
  if (absl::Status s = ReadFull(fd, scratch->data(), length, /*message_start=*/false); !s.ok()) return s;
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
