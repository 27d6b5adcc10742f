#include "hypervisor/boot/numa_topology.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "hypervisor/base/platform.h"

namespace coalesce {
uint8_t SlitDistanceForRoundTrip(absl::Duration rtt) {
  const double us = std::max(0.0, absl::ToDoubleMicroseconds(rtt));
  const double d = std::round(10.0 + 20.0 * std::log10(1.0 + us / 10.0));
  return static_cast<uint8_t>(std::clamp(d, 11.0, 254.0));
}

void SetUniformDistances(NumaTopology& topology, uint8_t distance) {
  const size_t n = topology.nodes.size();
  topology.distances.assign(n * n, distance);
  for (size_t i = 0; i < n; ++i) topology.distances[i * n + i] = kSlitLocalDistance;
}

void SetDistancesFromHomeRoundTrips(NumaTopology& topology, const std::vector<absl::Duration>& rtt_from_home) {
  const size_t n = topology.nodes.size();
  SetUniformDistances(topology, kSlitDefaultRemoteDistance);
  // A spare domain (an edge attached later, not measured yet) stands at the farthest measured edge's distance.
  absl::Duration farthest = absl::ZeroDuration();
  for (size_t i = 1; i < rtt_from_home.size(); ++i) farthest = std::max(farthest, rtt_from_home[i]);
  auto rtt = [&](size_t i) {
    if (i < rtt_from_home.size() && !topology.nodes[i].spare) return rtt_from_home[i];
    return topology.nodes[i].spare ? farthest : absl::ZeroDuration();
  };
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      if (i == j) continue;
      // Home to an edge: that link. Edge to edge: the slower of the two links home measured.
      const absl::Duration r = (i == 0) ? rtt(j) : (j == 0) ? rtt(i) : std::max(rtt(i), rtt(j));
      topology.distances[i * n + j] = SlitDistanceForRoundTrip(r);
    }
  }
}

NumaTopology TopologyFromPlacement(uint32_t vcpu_count, uint64_t memory, const std::vector<NumaNode>& edges) {
  NumaTopology t;
  t.nodes.resize(1 + edges.size());
  std::vector<bool> remote(vcpu_count, false);
  uint64_t edge_memory = 0;
  for (size_t e = 0; e < edges.size(); ++e) {
    t.nodes[e + 1] = edges[e];
    edge_memory += edges[e].memory;
    for (uint32_t v : edges[e].vcpus) {
      if (v < vcpu_count) remote[v] = true;
    }
  }
  for (uint32_t v = 0; v < vcpu_count; ++v) {
    if (!remote[v]) t.nodes[0].vcpus.push_back(v);
  }
  t.nodes[0].memory = memory > edge_memory ? memory - edge_memory : 0;  // more is refused by the validation
  SetUniformDistances(t, kSlitDefaultRemoteDistance);
  return t;
}

std::vector<MemoryShare> MemoryEdgeShares(uint64_t memory, uint64_t home_allowance, const std::vector<uint64_t>& lent) {
  std::vector<MemoryShare> shares(lent.size());
  if (home_allowance == 0 || home_allowance >= memory) return shares;
  uint64_t left = memory - home_allowance;
  for (size_t e = 0; e < lent.size() && left != 0; ++e) {
    shares[e].length = std::min(lent[e] / platform::kPageSize * platform::kPageSize, left);
    left -= shares[e].length;
  }
  uint64_t offset = home_allowance + left;  // home's domain first: its allowance and what no edge took
  for (MemoryShare& share : shares) {
    if (share.length == 0) continue;
    share.offset = offset;
    offset += share.length;
  }
  return shares;
}

absl::Status ValidateNumaTopology(const NumaTopology& topology, uint32_t vcpu_count, uint64_t memory) {
  const size_t n = topology.nodes.size();
  if (n == 0) return absl::InvalidArgumentError("NUMA: no domains");
  if (n > kMaxNumaNodes) {
    return absl::InvalidArgumentError(absl::StrFormat("NUMA: %u domains, at most %u", n, kMaxNumaNodes));
  }
  std::vector<int> domain_of(vcpu_count, -1);
  uint64_t total = 0;
  for (size_t d = 0; d < n; ++d) {
    const NumaNode& node = topology.nodes[d];
    for (uint32_t v : node.vcpus) {
      if (v >= vcpu_count) {
        return absl::InvalidArgumentError(
            absl::StrFormat("NUMA domain %u: vCPU %u does not exist (the guest has %u)", d, v, vcpu_count));
      }
      if (domain_of[v] >= 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("NUMA: vCPU %u is in domains %d and %u", v, domain_of[v], d));
      }
      domain_of[v] = static_cast<int>(d);
    }
    if (node.memory % platform::kPageSize != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("NUMA domain %u: memory %u is not a multiple of 4 KiB", d, node.memory));
    }
    if (node.memory != 0 && node.memory < kMinNumaNodeMemory) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "NUMA domain %u: %u bytes of memory; at least 4M (Linux ignores smaller nodes), or 0 for CPUs only", d,
          node.memory));
    }
    if (node.spare) {
      if (!node.vcpus.empty() || node.memory != 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("NUMA domain %u is spare (for an edge attached later) but has vCPUs or memory", d));
      }
      if (d + 1 < n && !topology.nodes[d + 1].spare) {
        return absl::InvalidArgumentError(
            absl::StrFormat("NUMA domain %u is spare but domain %u after it is not", d, d + 1));
      }
    } else if (node.memory == 0 && node.vcpus.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("NUMA domain %u has neither vCPUs nor memory", d));
    }
    total += node.memory;
  }
  for (uint32_t v = 0; v < vcpu_count; ++v) {
    if (domain_of[v] < 0) return absl::InvalidArgumentError(absl::StrFormat("NUMA: vCPU %u is in no domain", v));
  }
  if (total != memory) {
    return absl::InvalidArgumentError(
        absl::StrFormat("NUMA: the domains hold %u bytes of memory, the guest has %u", total, memory));
  }
  if (topology.distances.size() != n * n) {
    return absl::InvalidArgumentError(
        absl::StrFormat("NUMA: %u distances for %u domains (need %u)", topology.distances.size(), n, n * n));
  }
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      const uint8_t d = topology.distance(i, j);
      const bool ok = (i == j) ? d == kSlitLocalDistance : (d > kSlitLocalDistance && d < 255);
      if (!ok) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "NUMA: distance %u from domain %u to %u (10 to itself, 11..254 to another domain)", d, i, j));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<NumaMemoryRange> NumaMemoryRanges(const NumaTopology& topology, const std::vector<MemoryRegion>& ram) {
  std::vector<NumaMemoryRange> out;
  size_t region = 0;
  uint64_t used = 0;  // bytes of ram[region] already given to a domain
  for (size_t d = 0; d < topology.nodes.size(); ++d) {
    uint64_t left = topology.nodes[d].memory;
    while (left > 0 && region < ram.size()) {
      const uint64_t take = std::min(left, ram[region].size - used);
      out.push_back({ram[region].guest_phys + used, take, static_cast<uint32_t>(d)});
      left -= take;
      used += take;
      if (used == ram[region].size) {
        ++region;
        used = 0;
      }
    }
  }
  return out;
}

void AddSpareDomains(NumaTopology& topology, uint8_t distance) {
  const size_t before = topology.nodes.size();
  const size_t after = std::min(kMaxNumaNodes, before + kSpareNumaDomains);
  std::vector<uint8_t> old = std::move(topology.distances);
  topology.nodes.resize(after, NumaNode{.spare = true});
  topology.distances.assign(after * after, distance);
  for (size_t i = 0; i < after; ++i) {
    for (size_t j = 0; j < after; ++j) {
      if (i == j) {
        topology.distances[i * after + j] = kSlitLocalDistance;
      } else if (i < before && j < before && old.size() == before * before) {
        topology.distances[i * after + j] = old[i * before + j];  // the boot domains keep theirs
      }
    }
  }
}

}  // namespace coalesce
