// The values users type on the command line and in profiles: sizes, vCPU lists, host:port, --edge, --disk,
// --net and guest-physical ranges (--home-only-memory). The first byte picks the parser, the rest is the text.
// Round trips hold where the code promises one: FormatSize is exact, FormatVcpuList is the sorted compact form,
// HostPort::ToString parses back to itself, FormatGuestRanges parses back to the same sorted ranges.
#include <algorithm>
#include <string_view>

#include "devmodel/vhost_user/disk_spec.h"
#include "devmodel/virtio/virtio_net_tap.h"
#include "edge_monitor/edge_flag.h"
#include "edge_monitor/guest_ranges.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/size.h"
#include "edge_monitor/vcpu_list.h"
#include "tests/fuzz/fuzz_target.h"

using namespace coalesce;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 7) {
    case 0: {
      auto v = ParseSize(text);
      if (!v.ok()) break;
      auto back = ParseSize(FormatSize(*v));
      FUZZ_CHECK(back.ok() && *back == *v);
      break;
    }
    case 1: {
      auto ids = ParseVcpuList(text);
      if (!ids.ok()) break;
      auto back = ParseVcpuList(FormatVcpuList(*ids));
      FUZZ_CHECK(back.ok());
      std::vector<uint32_t> sorted = *ids;
      std::sort(sorted.begin(), sorted.end());
      FUZZ_CHECK(*back == sorted);
      break;
    }
    case 2: {
      auto hp = ParseHostPort(text, "address", /*allow_port_zero=*/data[0] & 0x80);
      if (!hp.ok()) break;
      auto back = ParseHostPort(hp->ToString(), "address", /*allow_port_zero=*/true);
      FUZZ_CHECK(back.ok() && back->ToString() == hp->ToString());
      break;
    }
    case 3: (void)ParseEdgeFlag(text); break;
    case 4: (void)ParseDiskSpec(text); break;
    case 5: (void)ParseNetSpec(text); break;
    case 6: {
      auto ranges = ParseGuestRanges(text, "ranges");
      if (!ranges.ok()) break;
      for (size_t i = 0; i < ranges->size(); ++i) {
        const GuestRange& r = (*ranges)[i];
        FUZZ_CHECK(r.size > 0 && r.start % 4096 == 0 && r.size % 4096 == 0 && r.end() > r.start);
        FUZZ_CHECK(i == 0 || (*ranges)[i - 1].end() <= r.start);
      }
      auto back = ParseGuestRanges(FormatGuestRanges(*ranges), "ranges");
      FUZZ_CHECK(back.ok() && *back == *ranges);
      break;
    }
  }
  return 0;
}
