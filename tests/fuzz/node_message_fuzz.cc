// Node messages (vcpu_remote/node_message.h) as a peer sends them: Decode must refuse or accept without a crash,
// and whatever it accepts must encode back to bytes that decode to the same encoding (no field read but dropped).
#include <span>
#include <vector>

#include "tests/fuzz/fuzz_target.h"
#include "vcpu_remote/node_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = coalesce::node_msg::Decode(std::span<const uint8_t>(data, size));
  if (!m.ok()) return 0;
  const std::vector<uint8_t> once = coalesce::node_msg::Encode(*m);
  auto again = coalesce::node_msg::Decode(once);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(coalesce::node_msg::Encode(*again) == once);
  return 0;
}
