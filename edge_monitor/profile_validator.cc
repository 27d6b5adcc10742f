#include "edge_monitor/profile_validator.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dsm/link_spec.h"
#include "edge_monitor/guest_ranges.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/size.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/base/platform.h"

namespace coalesce {
namespace {

// guest.max_memory (--max-memory): empty, or at least guest.memory with the difference in whole 128 MiB hotplug
// slots, at most platform::kHotplugMaxSlots of them. An unparsable guest.memory is reported on its own.
absl::Status CheckMaxMemory(const std::string& memory_text, const std::string& max_text) {
  if (max_text.empty()) return absl::OkStatus();
  absl::StatusOr<uint64_t> max = ParseSize(max_text, "guest.max_memory");
  if (!max.ok()) return max.status();
  absl::StatusOr<uint64_t> memory = ParseSize(memory_text, "guest.memory");
  if (!memory.ok()) return absl::OkStatus();
  const uint64_t slot = platform::kMemoryHotplugSlotSize;
  if (*max < *memory || (*max - *memory) % slot != 0 || (*max - *memory) / slot > platform::kHotplugMaxSlots) {
    return absl::InvalidArgumentError(absl::StrCat(
        "guest.max_memory: '", max_text, "' must be guest.memory (", memory_text, ") plus whole 128M slots, at most ",
        platform::kHotplugMaxSlots, " of them (", FormatSize(platform::kHotplugMaxSlots * slot), ")"));
  }
  return absl::OkStatus();
}

void CheckGuest(const pb::Guest& guest, std::vector<std::string>* errors) {
  if (const std::string& m = guest.cpu_model(); !m.empty() && m != "auto" && m != "host" && m != "baseline") {
    errors->push_back(absl::StrCat("guest.cpu_model: '", m, "' is not a CPU model (host, baseline or auto)"));
  }
  if (guest.vcpus() == 0) {
    errors->push_back("guest.vcpus is missing (a vCPU count 1..255)");
  } else if (guest.vcpus() > kMaxVcpuCount) {
    errors->push_back(absl::StrCat("guest.vcpus: ", guest.vcpus(), " is out of range (1..", kMaxVcpuCount, ")"));
  }
  if (guest.memory().empty()) {
    errors->push_back("guest.memory is missing (a size such as \"512M\" or \"2G\")");
  } else if (auto size = ParseSize(guest.memory(), "guest.memory"); !size.ok()) {
    errors->push_back(std::string(size.status().message()));
  } else if (*size == 0) {
    errors->push_back("guest.memory: must be larger than 0");
  } else if (*size % platform::kPageSize != 0) {
    errors->push_back(absl::StrCat("guest.memory: '", guest.memory(), "' is not a multiple of 4K"));
  }
  if (absl::Status st = CheckMaxMemory(guest.memory(), guest.max_memory()); !st.ok()) {
    errors->push_back(std::string(st.message()));
  }
  if (guest.kernel().empty()) errors->push_back("guest.kernel is missing (the path of the guest kernel)");
}

void CheckPolicies(const pb::Policies& policies, std::vector<std::string>* errors) {
  if (policies.has_min_battery_percent() && policies.min_battery_percent() > 100) {
    errors->push_back(absl::StrCat("policies.min_battery_percent: ", policies.min_battery_percent(),
                                   " is out of range (0..100)"));
  }
  if (policies.has_max_edge_load() && !(policies.max_edge_load() > 0)) {
    errors->push_back("policies.max_edge_load: must be larger than 0");
  }
  if (policies.has_lease_seconds() && policies.lease_seconds() == 0) {
    errors->push_back("policies.lease_seconds: must be at least 1");
  }
  if (policies.has_max_edge_vcpus() && policies.max_edge_vcpus() == 0) {
    errors->push_back("policies.max_edge_vcpus: must be at least 1");
  }
  if (policies.has_max_edge_memory()) {
    if (auto size = ParseSize(policies.max_edge_memory(), "policies.max_edge_memory"); !size.ok()) {
      errors->push_back(std::string(size.status().message()));
    }
  }
}

// The user's caps on what one edge may be given (the link's bound is checked once it is measured, at start).
void CheckEdgeAgainstPolicies(const pb::Profile& profile, int i, std::vector<std::string>* errors) {
  const pb::Policies& policies = profile.policies();
  const pb::EdgeNode& edge = profile.edge(i);
  if (policies.memory_only() && edge.vcpus_size() > 0) {
    errors->push_back(absl::StrCat("policies.memory_only: ", DescribeEdge(edge, i),
                                   " is given vCPUs; under this policy edges lend memory only (edge.memory)"));
  }
  if (policies.has_max_edge_memory() && !edge.memory().empty()) {
    auto cap = ParseSize(policies.max_edge_memory(), "policies.max_edge_memory");
    auto lent = ParseSize(edge.memory(), "edge.memory");
    if (cap.ok() && lent.ok() && *lent > *cap) {
      errors->push_back(absl::StrCat(DescribeEdge(edge, i), ": lends ", edge.memory(), ", over policies.max_edge_memory (",
                                     policies.max_edge_memory(), ")"));
    }
  }
  if (policies.has_max_edge_vcpus() && static_cast<uint32_t>(edge.vcpus_size()) > policies.max_edge_vcpus()) {
    errors->push_back(absl::StrCat(DescribeEdge(edge, i), ": ", edge.vcpus_size(), " vCPUs, over policies.max_edge_vcpus (",
                                   policies.max_edge_vcpus(), ")"));
  }
  if (policies.has_max_edge_memory() && edge.vcpus_size() > 0) {
    // An edge maps the whole guest RAM through the DSM: at worst every page ends up there.
    auto cap = ParseSize(policies.max_edge_memory(), "policies.max_edge_memory");
    auto guest = ParseSize(profile.guest().memory(), "guest.memory");
    if (cap.ok() && guest.ok() && *guest > *cap) {
      errors->push_back(absl::StrCat(DescribeEdge(edge, i), ": it may come to hold all of guest.memory (",
                                     profile.guest().memory(), "), over policies.max_edge_memory (",
                                     policies.max_edge_memory(), ")"));
    }
  }
}

// home.memory (the allowance): smaller than the guest, and the memory edges lend at least the rest.
void CheckHomeMemory(const pb::Profile& profile, uint64_t lent_total, std::vector<std::string>* errors) {
  const std::string& text = profile.home().memory();
  if (text.empty()) {
    if (lent_total != 0) errors->push_back("memory edges are given, but no home.memory (--home-memory) says how much stays home");
    return;
  }
  auto allowance = ParseSize(text, "home.memory");
  auto guest = ParseSize(profile.guest().memory(), "guest.memory");
  if (!allowance.ok()) {
    errors->push_back(std::string(allowance.status().message()));
    return;
  }
  if (absl::Status st = CheckHomeAllowance(*allowance, "home.memory", text); !st.ok()) {
    errors->push_back(std::string(st.message()));
    return;
  }
  if (!guest.ok()) return;  // reported with the guest
  if (*allowance >= *guest) {
    errors->push_back(absl::StrCat("home.memory (", text, ") is not smaller than guest.memory (", profile.guest().memory(),
                                   "): nothing would live on memory edges"));
  } else if (lent_total < *guest - *allowance) {
    errors->push_back(absl::StrCat("home.memory (", text, ") keeps ", FormatSize(*allowance), " of guest.memory (",
                                   profile.guest().memory(), ") at home, and the memory edges lend ",
                                   FormatSize(lent_total), ": at least ", FormatSize(*guest - *allowance),
                                   " must be lent"));
  }
}

}  // namespace

std::string DescribeEdge(const pb::EdgeNode& edge, int index) {
  const std::string address = edge.address().empty() ? absl::StrCat("edge[", index, "]") : edge.address();
  if (edge.name().empty()) return absl::StrCat("edge ", address);
  return absl::StrCat("edge '", edge.name(), "' (", address, ")");
}

absl::Status ValidateProfile(const pb::Profile& profile) {
  std::vector<std::string> errors;
  CheckGuest(profile.guest(), &errors);
  CheckPolicies(profile.policies(), &errors);

  if (!profile.home().data_plane_address().empty()) {
    if (auto hp = ParseHostPort(profile.home().data_plane_address(), "home.data_plane_address",
                                /*allow_port_zero=*/true);
        !hp.ok()) {
      errors.push_back(std::string(hp.status().message()));
    }
  }
  if (!profile.home().home_only_memory().empty()) {
    if (auto r = ParseGuestRanges(profile.home().home_only_memory(), "home.home_only_memory"); !r.ok()) {
      errors.push_back(std::string(r.status().message()));
    }
  }
  if (!profile.home().link().empty()) {
    if (auto l = dsm::ParseLinkSpec(profile.home().link(), "home.link"); !l.ok()) {
      errors.push_back(std::string(l.status().message()));
    }
  }
  if (!profile.home().data_plane_advertise().empty()) {
    if (auto hp = ParseHostPort(profile.home().data_plane_advertise(), "home.data_plane_advertise"); !hp.ok()) {
      errors.push_back(std::string(hp.status().message()));
    }
  }

  uint64_t lent_total = 0;
  absl::flat_hash_map<std::string, int> edge_by_address;
  for (int i = 0; i < profile.edge_size(); ++i) {
    const pb::EdgeNode& edge = profile.edge(i);
    const std::string what = absl::StrCat("edge[", i, "].address");
    if (edge.address().empty()) {
      errors.push_back(absl::StrCat(what, " is missing (the edge agent's host:port)"));
    } else if (auto hp = ParseHostPort(edge.address(), what); !hp.ok()) {
      errors.push_back(std::string(hp.status().message()));
    } else if (auto [it, inserted] = edge_by_address.emplace(hp->ToString(), i); !inserted) {
      errors.push_back(absl::StrCat("edge[", i, "] and edge[", it->second, "] have the same address ",
                                    edge.address(), "; list all of that agent's vCPUs in one edge"));
    }
    if (!edge.memory().empty()) {
      // A memory edge: it lends RAM and runs nothing.
      auto lent = ParseSize(edge.memory(), absl::StrCat("edge[", i, "].memory"));
      if (!lent.ok()) {
        errors.push_back(std::string(lent.status().message()));
      } else if (*lent == 0 || *lent % platform::kPageSize != 0) {
        errors.push_back(absl::StrCat(DescribeEdge(edge, i), ": memory '", edge.memory(), "' is not a positive multiple of 4K"));
      } else {
        lent_total += *lent;
      }
      if (edge.vcpus_size() > 0) {
        errors.push_back(absl::StrCat(DescribeEdge(edge, i),
                                      " has both vCPUs and memory: an edge that runs vCPUs maps all of guest RAM; "
                                      "memory is for memory edges, which run none"));
      }
    } else if (edge.vcpus_size() == 0) {
      errors.push_back(absl::StrCat(DescribeEdge(edge, i), " has no vCPUs and lends no memory"));
    }
    CheckEdgeAgainstPolicies(profile, i, &errors);
  }

  CheckHomeMemory(profile, lent_total, &errors);

  // Placement: every id 0..vcpus-1 exactly once; ids up to max_vcpus-1 (absent at boot) at most once.
  // Node names per id, in profile order (home first).
  const uint32_t vcpus = profile.guest().vcpus();
  const uint32_t max_vcpus = profile.guest().max_vcpus();
  if (max_vcpus != 0 && vcpus != 0 && (max_vcpus < vcpus || max_vcpus > kMaxVcpuCount)) {
    errors.push_back(absl::StrCat("guest.max_vcpus: ", max_vcpus, " is out of range (guest.vcpus ", vcpus, "..",
                                  kMaxVcpuCount, ")"));
  }
  const uint32_t possible = std::max(vcpus, std::min(max_vcpus, kMaxVcpuCount));
  std::map<uint32_t, std::vector<std::string>> placed;  // ordered: messages list ids ascending
  auto place = [&](uint32_t id, const std::string& node) {
    if (vcpus != 0 && id >= possible) {
      errors.push_back(absl::StrCat(node, ": vCPU ", id, " does not exist (guest.",
                                    possible > vcpus ? "max_vcpus" : "vcpus", " is ", possible, ", ids are 0..",
                                    possible - 1, ")"));
      return;
    }
    placed[id].push_back(node);
  };
  for (uint32_t id : profile.home().vcpus()) place(id, "home");
  for (int i = 0; i < profile.edge_size(); ++i) {
    for (uint32_t id : profile.edge(i).vcpus()) place(id, DescribeEdge(profile.edge(i), i));
  }
  for (const auto& [id, nodes] : placed) {
    if (nodes.size() > 1) {
      errors.push_back(absl::StrCat("vCPU ", id, " is placed more than once: on ", absl::StrJoin(nodes, " and on ")));
    }
  }
  if (vcpus != 0 && vcpus <= kMaxVcpuCount) {
    std::vector<uint32_t> missing;
    for (uint32_t id = 0; id < vcpus; ++id) {
      if (!placed.contains(id)) missing.push_back(id);
    }
    if (!missing.empty()) {
      errors.push_back(absl::StrCat(missing.size() == 1 ? "vCPU " : "vCPUs ", FormatVcpuList(missing),
                                    missing.size() == 1 ? " is" : " are", " not placed on any node (guest.vcpus is ",
                                    vcpus, "; list each id 0..", vcpus - 1, " under home or one edge)"));
    }
    auto boot = placed.find(0);
    if (boot != placed.end() && boot->second.size() == 1 && boot->second[0] != "home") {
      errors.push_back(absl::StrCat("vCPU 0 (the boot CPU) must run at home, not on ", boot->second[0]));
    }
  }

  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
}

}  // namespace coalesce
