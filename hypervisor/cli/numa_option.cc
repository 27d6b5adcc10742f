#include "hypervisor/cli/numa_option.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "edge_monitor/size.h"
#include "edge_monitor/vcpu_list.h"

namespace coalesce {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;

}  // namespace

absl::StatusOr<NumaChoice> ParseNumaSpec(std::string_view text_in, std::string_view what_in, uint32_t vcpu_count,
                                         uint64_t memory) {
  // absl's string_view is not std's in Debian's Abseil.
  const absl::string_view text(text_in.data(), text_in.size());
  const std::string what(what_in);
  NumaChoice choice;
  if (text.empty() || text == "auto") return choice;
  if (text == "off") {
    choice.mode = NumaMode::kOff;
    return choice;
  }
  choice.mode = NumaMode::kExplicit;
  size_t with_memory = 0;
  for (absl::string_view node_text : absl::StrSplit(text, '/')) {
    const size_t index = choice.nodes.size();
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": domain ", index, " ('", node_text, "'): ", why));
    };
    NumaNode node;
    bool have_cpus = false, have_memory = false;
    for (absl::string_view item : absl::StrSplit(node_text, ',')) {
      const size_t eq = item.find('=');
      if (eq == absl::string_view::npos) return bad(absl::StrCat("'", item, "' is not KEY=VALUE (cpus= or memory=)"));
      const absl::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
      if (key == "cpus" && !have_cpus) {
        absl::StatusOr<std::vector<uint32_t>> ids = ParseVcpuList(std::string_view(value.data(), value.size()));
        if (!ids.ok()) return bad(ids.status().message());
        node.vcpus = *std::move(ids);
        have_cpus = true;
      } else if (key == "memory" && !have_memory) {
        absl::StatusOr<uint64_t> bytes = ParseSize(std::string_view(value.data(), value.size()), "memory");
        if (!bytes.ok()) return bad(bytes.status().message());
        node.memory = *bytes;
        have_memory = true;
      } else {
        return bad(absl::StrCat("'", key, "' is ", key == "cpus" || key == "memory" ? "given twice" : "not a key",
                                " (cpus=LIST, memory=SIZE)"));
      }
    }
    if (!have_cpus) return bad("no cpus=LIST (a domain of memory only is not supported on one host)");
    with_memory += have_memory ? 1 : 0;
    choice.nodes.push_back(std::move(node));
  }
  if (choice.nodes.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": one domain is a flat machine; give two or more separated by '/', or auto or off"));
  }
  if (with_memory != 0 && with_memory != choice.nodes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": give memory= on every domain or on none"));
  }
  if (with_memory == 0) {
    const uint64_t share = memory / choice.nodes.size() / kMiB * kMiB;
    for (NumaNode& n : choice.nodes) n.memory = share;
    choice.nodes.back().memory = memory - share * (choice.nodes.size() - 1);
  }
  NumaTopology check;
  check.nodes = choice.nodes;
  SetUniformDistances(check, kSlitDefaultRemoteDistance);
  if (absl::Status st = ValidateNumaTopology(check, vcpu_count, memory); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", st.message()));
  }
  return choice;
}

}  // namespace coalesce
