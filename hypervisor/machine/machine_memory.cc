// The machine's side of memory edges while the guest runs (docs/COALESCENCE.md "Memory edges"): `coalesce ctl
// attach ADDR memory=SIZE` leases an edge's RAM (and a guest started with --max-memory grows by it),
// `ctl home-memory SIZE|off` sets how much guest RAM stays at home
// from now on, and `status` shows both. The DSM does the moving (docs/DSM.md, "Spilling to memory nodes").
#include <algorithm>

#include "absl/strings/str_format.h"
#include "devmodel/hotplug_controller.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/size.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/machine/coalescence_home.h"
#include "hypervisor/machine/machine.h"

namespace coalesce {
namespace {

double Mib(uint64_t pages) { return static_cast<double>(pages * platform::kPageSize) / (1 << 20); }

}  // namespace

std::string Machine::AttachMemoryEdge(const std::string& address, const std::string& size_text) {
  if (!mover_) return "error: only a coalesced VM (coalesce run --edge or --memory-edge) can attach edges";
  if (!running_.load()) return "error: the VM is still starting";
  if (absl::StatusOr<HostPort> hp = ParseHostPort(address, "attach"); !hp.ok()) {
    return absl::StrFormat("error: %s", hp.status().message());
  }
  absl::StatusOr<uint64_t> bytes = ParseSize(size_text, "attach: memory");
  if (!bytes.ok()) return absl::StrFormat("error: %s", bytes.status().message());
  // Up to the most RAM the guest may have: a guest that may grow grows by what is lent.
  const uint64_t most = config_.memory + config_.hotplug_memory();
  if (*bytes == 0 || *bytes % platform::kPageSize != 0 || *bytes > most) {
    return absl::StrFormat("error: attach: memory %s is not a positive multiple of 4K up to the guest's %s",
                           size_text, FormatSize(most));
  }
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<uint16_t> node =
      home_->AttachEdge(EdgePlacementSpec{.agent_address = address, .vcpus = {}, .memory_bytes = *bytes});
  if (!node.ok()) return absl::StrFormat("error: attach %s: %s", address, node.status().message());
  forwarding_router_->AddNode(*node);
  const double lease_ms = MsSince(start);
  const std::string grown = GrowWithLentMemory(*node, *bytes);
  return absl::StrFormat("vm %s: memory edge %s attached as node %u in %.1f ms, lending %s%s", config_.name, address,
                         *node, lease_ms, FormatSize(*bytes),
                         !grown.empty()                         ? grown
                         : home_->dsm().memory_allowance() == 0 ? " (home keeps all of guest RAM: ctl home-memory SIZE)"
                                                                : "");
}

std::string Machine::GrowWithLentMemory(uint16_t node, uint64_t bytes) {
  if (memory_hotplug_ == nullptr) return "";
  const uint32_t absent = memory_hotplug_->possible() - static_cast<uint32_t>(memory_hotplug_->PresentSlots().size());
  const uint32_t slots = std::min(absent, static_cast<uint32_t>(bytes / platform::kMemoryHotplugSlotSize));
  if (slots == 0) return "; the guest cannot grow by it (no absent 128 MiB slot fits: --max-memory)";
  // Home keeps what it held: with no allowance yet, the guest's RAM before it grows. The new RAM's pages beyond
  // that live on the memory edges.
  if (home_->dsm().memory_allowance() == 0) home_->dsm().SetMemoryAllowance(PresentMemory() / platform::kPageSize);
  const auto start = std::chrono::steady_clock::now();
  // The slots join the edge's own guest NUMA domain where the guest has one to give (docs/NUMA.md).
  const uint8_t domain = SpareDomainFor(node);
  absl::StatusOr<std::vector<uint32_t>> plugged = PlugMemorySlots(slots, domain);
  if (!plugged.ok()) return absl::StrFormat("; plugging its RAM into the guest failed: %s", plugged.status().message());
  {
    absl::MutexLock lock(&lent_mu_);
    std::vector<uint32_t>& lent = lent_memory_slots_[node];
    lent.insert(lent.end(), plugged->begin(), plugged->end());
  }
  if (domain != 0 && !plugged->empty()) {
    // As for a memory edge's share of boot RAM: its slots' pages are spilled to it first, so that the domain is
    // where the tables say. The slots are the lowest absent ones: one range, unless setmemory left a gap.
    const uint64_t first = (config_.memory + plugged->front() * platform::kMemoryHotplugSlotSize) / platform::kPageSize;
    const uint64_t end =
        (config_.memory + (plugged->back() + 1) * platform::kMemoryHotplugSlotSize) / platform::kPageSize;
    home_->dsm().SetMemoryNode(node, bytes / platform::kPageSize, {first, end});
  }
  return absl::StrFormat(
      "; the guest grew by it: memory slots %s plugged in%s, taken in %.1f ms; guest RAM %s, home keeps at most %s",
      FormatVcpuList(*plugged), DomainNote(domain), MsSince(start), FormatSize(PresentMemory()),
      FormatSize(home_->dsm().memory_allowance() * platform::kPageSize));
}

std::string Machine::HomeMemoryCommand(const std::vector<std::string>& words) {
  if (words.size() != 1) return "error: home-memory takes one argument: SIZE (e.g. 256M) or off";
  if (!home_) return "error: this VM runs on one node; there is nowhere else for its memory (--memory-edge)";
  uint64_t pages = 0;  // 0: no allowance
  if (words[0] != "off") {
    absl::StatusOr<uint64_t> bytes = ParseSize(words[0], "home-memory");
    if (!bytes.ok()) return absl::StrFormat("error: %s", bytes.status().message());
    if (absl::Status st = CheckHomeAllowance(*bytes, "home-memory", words[0]); !st.ok()) {
      return absl::StrFormat("error: %s", st.message());
    }
    if (*bytes < PresentMemory()) pages = *bytes / platform::kPageSize;
  }
  const uint64_t total = PresentMemory() / platform::kPageSize;  // plugged-in slots included
  const uint64_t capacity = home_->dsm().memory_nodes_capacity();
  if (pages != 0 && capacity < total - pages) {
    return absl::StrFormat(
        "error: home-memory %s: the memory edges lend %s, and keeping %s at home needs at least %s there "
        "(ctl attach ADDR memory=SIZE)",
        words[0], FormatSize(capacity * platform::kPageSize), FormatSize(pages * platform::kPageSize),
        FormatSize((total - pages) * platform::kPageSize));
  }
  home_->dsm().SetMemoryAllowance(pages);
  if (pages == 0) {
    return absl::StrFormat("vm %s: home keeps all of guest RAM (%.0f MiB present now)", config_.name,
                           Mib(home_->dsm().resident_pages()));
  }
  return absl::StrFormat("vm %s: home keeps at most %s of guest RAM; %.0f MiB present now; memory edges lend %s",
                         config_.name, FormatSize(pages * platform::kPageSize), Mib(home_->dsm().resident_pages()),
                         FormatSize(capacity * platform::kPageSize));
}

std::string Machine::HomeMemoryStatus() const {
  if (!home_) return "";
  const uint64_t allowance = home_->dsm().memory_allowance();
  const uint64_t capacity = home_->dsm().memory_nodes_capacity();
  if (allowance == 0 && capacity == 0) return "";
  return absl::StrFormat(
      "home memory: %s, %.1f MiB present now (peak %.1f MiB); memory edges lend %.0f MiB; pages spilled %u\n",
      allowance == 0 ? std::string("no allowance") : absl::StrFormat("allowance %.0f MiB", Mib(allowance)),
      Mib(home_->dsm().resident_pages()), Mib(home_->dsm().peak_resident_pages()), Mib(capacity),
      home_->dsm().stats().pages_spilled.load());
}

}  // namespace coalesce
