#include "edge_monitor/guest_ranges.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "edge_monitor/size.h"
#include "hypervisor/base/platform.h"

namespace coalesce {
namespace {

}  // namespace

absl::StatusOr<std::vector<GuestRange>> ParseGuestRanges(std::string_view text, std::string_view what) {
  std::vector<GuestRange> out;
  for (absl::string_view item : absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": '", item, "': ", why));
    };
    const size_t plus = item.find('+');
    if (plus == absl::string_view::npos) return bad("expected START+SIZE, e.g. 0x1000000+64K");
    absl::string_view start_text = item.substr(0, plus);
    GuestRange r;
    const bool hex = absl::StartsWith(start_text, "0x") || absl::StartsWith(start_text, "0X");
    if (!(hex ? absl::SimpleHexAtoi(start_text.substr(2), &r.start) : absl::SimpleAtoi(start_text, &r.start)) ||
        start_text.empty()) {
      return bad("START is not an address (hex 0x... or decimal)");
    }
    auto size = ParseSize(std::string(item.substr(plus + 1)), "SIZE");
    if (!size.ok()) return bad(std::string(size.status().message()));
    r.size = *size;
    if (r.size == 0) return bad("SIZE is 0");
    if (r.start % platform::kPageSize != 0 || r.size % platform::kPageSize != 0)
      return bad("START and SIZE must be multiples of 4 KiB");
    if (r.start + r.size < r.start) return bad("the range wraps around");
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const GuestRange& a, const GuestRange& b) { return a.start < b.start; });
  for (size_t i = 1; i < out.size(); ++i) {
    if (out[i].start < out[i - 1].end()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: ranges at %#x and %#x overlap", std::string(what),
                                                        out[i - 1].start, out[i].start));
    }
  }
  return out;
}

std::string FormatGuestRanges(const std::vector<GuestRange>& ranges) {
  return absl::StrJoin(ranges, ",", [](std::string* s, const GuestRange& r) {
    absl::StrAppend(s, absl::StrFormat("%#x+", r.start), FormatSize(r.size));
  });
}

}  // namespace coalesce
