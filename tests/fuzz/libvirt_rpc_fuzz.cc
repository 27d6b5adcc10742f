// libvirt RPC input as a virsh client (or anyone who can open the daemon's socket) sends it
// (hypervisor/daemon/rpc_message.h, xdr_stream.h): the length word, the message header, the error body, and a
// payload read the way the dispatcher reads a domain call's arguments. Decoders stay bounded and sticky.
#include <span>

#include "hypervisor/daemon/rpc_message.h"
#include "hypervisor/daemon/xdr_stream.h"
#include "tests/fuzz/fuzz_target.h"

using namespace coalesce::daemon;

namespace {

void DecodeAsCall(std::span<const uint8_t> payload) {
  XdrDecoder d(payload);
  d.GetString();
  d.GetFixedOpaque<16>();
  d.GetI32();
  d.GetOptionalString();
  d.GetU32();
  d.GetVarOpaque(1 << 20);
  (void)d.Finished();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  if (size >= kLengthBytes) (void)DecodeLength(bytes.first<kLengthBytes>());
  auto m = DecodeMessage(bytes);
  if (m.ok()) {
    DecodeAsCall(m->payload);
    // What DecodeMessage accepts re-encodes to the same bytes.
    auto re = EncodeMessage(m->header, m->payload);
    FUZZ_CHECK(re.size() == size + kLengthBytes);
    FUZZ_CHECK(std::equal(re.begin() + kLengthBytes, re.end(), bytes.begin()));
  }
  (void)DecodeError(bytes);
  DecodeAsCall(bytes);
  return 0;
}
