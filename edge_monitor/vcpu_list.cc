#include "edge_monitor/vcpu_list.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace coalesce {
namespace {

absl::StatusOr<uint32_t> ParseId(absl::string_view item, std::string_view whole) {
  uint32_t id = 0;
  if (!absl::SimpleAtoi(item, &id) || item.empty() || item[0] == '+' || item[0] == '-') {
    return absl::InvalidArgumentError(absl::StrCat("vCPU list '", std::string(whole), "': '", item,
                                                   "' is not a vCPU id"));
  }
  if (id >= kMaxVcpuCount) {
    return absl::InvalidArgumentError(absl::StrCat("vCPU list '", std::string(whole), "': vCPU id ", id,
                                                   " is out of range (0..", kMaxVcpuCount - 1, ")"));
  }
  return id;
}

}  // namespace

absl::StatusOr<std::vector<uint32_t>> ParseVcpuList(std::string_view text) {
  const absl::string_view whole(text.data(), text.size());
  if (absl::StripAsciiWhitespace(whole).empty()) {
    return absl::InvalidArgumentError("vCPU list is empty");
  }
  std::vector<uint32_t> ids;
  absl::flat_hash_set<uint32_t> seen;
  for (absl::string_view raw : absl::StrSplit(whole, ',')) {
    const absl::string_view item = absl::StripAsciiWhitespace(raw);
    if (item.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("vCPU list '", whole, "' has an empty item"));
    }
    uint32_t first = 0;
    uint32_t last = 0;
    // A '-' after the first character separates a range ("2-3"); a leading '-' is a negative id, rejected below.
    const size_t dash = item.find('-', 1);
    if (dash == absl::string_view::npos) {
      auto id = ParseId(item, text);
      if (!id.ok()) return id.status();
      first = last = *id;
    } else {
      auto lo = ParseId(absl::StripAsciiWhitespace(item.substr(0, dash)), text);
      if (!lo.ok()) return lo.status();
      auto hi = ParseId(absl::StripAsciiWhitespace(item.substr(dash + 1)), text);
      if (!hi.ok()) return hi.status();
      if (*hi < *lo) {
        return absl::InvalidArgumentError(
            absl::StrCat("vCPU list '", whole, "': range '", item, "' runs backwards"));
      }
      first = *lo;
      last = *hi;
    }
    for (uint32_t id = first; id <= last; ++id) {
      if (!seen.insert(id).second) {
        return absl::InvalidArgumentError(absl::StrCat("vCPU list '", whole, "': vCPU ", id, " is listed twice"));
      }
      ids.push_back(id);
    }
  }
  return ids;
}

std::string FormatVcpuList(std::vector<uint32_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::string out;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (!out.empty()) out += ',';
    absl::StrAppend(&out, ids[i]);
    if (j > i) absl::StrAppend(&out, "-", ids[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace coalesce
