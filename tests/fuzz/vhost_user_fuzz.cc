// Replies from a vhost-user back end (devmodel/vhost_user/vhost_user_message.h): the first byte picks the request
// the reply is checked against, the next 12 bytes are the header, the rest the payload for each payload decoder.
#include <span>

#include "devmodel/vhost_user/vhost_user_message.h"
#include "tests/fuzz/fuzz_target.h"

using namespace coalesce::vhost_user;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 + kHeaderSize) return 0;
  const auto expected = static_cast<Request>(data[0] % 48);
  std::span<const uint8_t> header(data + 1, kHeaderSize);
  std::span<const uint8_t> payload(data + 1 + kHeaderSize, size - 1 - kHeaderSize);
  auto h = DecodeReplyHeader(header, expected);
  if (h.ok()) {
    FUZZ_CHECK(h->request == expected);
    FUZZ_CHECK(h->size <= kMaxPayload);
  }
  auto u = DecodeU64(expected, payload);
  if (u.ok()) FUZZ_CHECK(payload.size() == sizeof(uint64_t));
  (void)DecodeVringState(expected, payload);
  const uint32_t asked = payload.empty() ? 0 : payload[0];
  auto c = DecodeConfig(payload, asked);
  if (c.ok()) FUZZ_CHECK(c->size() == asked);
  return 0;
}
