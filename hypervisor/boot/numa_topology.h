// The guest's NUMA topology, described to it by the ACPI SRAT and SLIT: which vCPUs and how much RAM belong to
// each proximity domain, and how far apart the domains are. A coalesced VM gets one domain per node (home,
// then each edge in placement order) with distances from the measured round trip between the nodes, so the
// guest's scheduler and allocator keep tasks and their memory on one node and treat crossing as expensive.
// `coalesce run --numa` may also lay domains out on one host: to study a guest's NUMA behaviour, or as the
// same-topology single-node baseline of a benchmark. docs/NUMA.md.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

// What `--numa` (and the profile's guest.numa) asked for.
enum class NumaMode {
  kAuto,      // one domain per node of a coalesced VM; a flat machine on one node
  kOff,       // no SRAT or SLIT: the guest sees one flat machine
  kExplicit,  // the domains given (one host only)
};

struct NumaNode {
  std::vector<uint32_t> vcpus;  // vCPU indexes (= APIC ids) in this domain
  uint64_t memory = 0;          // bytes of guest RAM; domains take RAM in order from its bottom; 0: CPUs only
  // Reserved for an edge attached after boot: no CPUs or RAM at boot, then the CPUs and memory slots plugged in
  // for that edge (their _PXM names it). The SRAT gives it a hot-pluggable range that never holds RAM, so the
  // guest counts the domain as possible from boot. Spare domains come after every other.
  bool spare = false;
};

struct NumaTopology {
  std::vector<NumaNode> nodes;    // domain i is nodes[i]
  std::vector<uint8_t> distances;  // nodes.size() squared, row-major: SLIT values (10 local, 11..254 remote)
  // One domain or none says nothing the flat tables do not: no SRAT or SLIT then.
  [[nodiscard]] bool enabled() const { return nodes.size() > 1; }
  [[nodiscard]] uint8_t distance(size_t from, size_t to) const { return distances[from * nodes.size() + to]; }
};

inline constexpr uint8_t kSlitLocalDistance = 10;
inline constexpr uint8_t kSlitDefaultRemoteDistance = 20;  // Linux's REMOTE_DISTANCE: no link to measure
inline constexpr size_t kMaxNumaNodes = 64;

// The SLIT distance for a round trip between two nodes: 10 + 20 per decade of (1 + rtt / 10 us), rounded,
// within 11..254. A DSM fault costs a round trip, so the scale is logarithmic: 2 us (InfiniBand) 12, 60 us
// (loopback TCP) 27, 2 ms (5G URLLC) 56, 40 ms (WiFi, 90th percentile) 82. Above 30 (Linux's
// RECLAIM_DISTANCE) the guest reclaims local memory before it allocates remote memory, and its scheduler
// stops balancing tasks across the domains on fork, exec and wake-up.
uint8_t SlitDistanceForRoundTrip(absl::Duration rtt);

// Every remote distance set to `distance` (and every local one to 10).
void SetUniformDistances(NumaTopology& topology, uint8_t distance);

// Distances of a coalesced VM from home's measured round trips: rtt_from_home[i] for domain i >= 1 (entry 0
// is ignored). Between two edges, which home cannot measure, the slower of their two links stands in; a spare
// domain (NumaNode::spare) takes the farthest measured edge's round trip.
void SetDistancesFromHomeRoundTrips(NumaTopology& topology, const std::vector<absl::Duration>& rtt_from_home);

// A coalesced VM's domains: domain 0 is home, with the vCPUs not placed on an edge and the RAM no edge's domain
// names, then one domain per edge in placement order, `edges[i]` (its vCPUs; RAM only for a memory edge, whose
// share MemoryEdgeShares gives: a vCPU edge's pages start at home and move to the CPU that uses them, so a
// range of RAM would claim a locality that is not there). Distances start at the default; the machine sets
// measured ones later.
NumaTopology TopologyFromPlacement(uint32_t vcpu_count, uint64_t memory, const std::vector<NumaNode>& edges);

// The boot RAM each edge's domain names, in placement order: home keeps the bottom `home_allowance` bytes (0:
// no allowance, all of it), then each memory edge (lent[i] != 0) takes up to what it lends from what is left,
// until the RAM is shared out; vCPU edges (lent[i] == 0) get none. What the edges cannot take stays with home, at
// the bottom. Home's DSM spills a page of a memory edge's share to that edge first (dsm/memory_allowance.h), so
// the domain stays where the tables say it is.
struct MemoryShare {
  uint64_t offset = 0;  // from the bottom of boot RAM: its offset in the memfd (GuestMemory puts boot RAM first)
  uint64_t length = 0;  // bytes; 0: none
};
std::vector<MemoryShare> MemoryEdgeShares(uint64_t memory, uint64_t home_allowance, const std::vector<uint64_t>& lent);

// A coalesced VM that may gain CPUs or memory while it runs reserves this many spare domains (NumaNode::spare)
// for edges attached after boot; the guest's tables cannot gain domains later.
inline constexpr size_t kSpareNumaDomains = 2;
// Appends up to kSpareNumaDomains spare domains (fewer where kMaxNumaNodes stops them), at `distance` from
// every other domain.
void AddSpareDomains(NumaTopology& topology, uint8_t distance);

// Linux's NODE_MIN_SIZE on x86: a domain with less RAM is dropped.
inline constexpr uint64_t kMinNumaNodeMemory = 4ULL << 20;

// Every vCPU 0..vcpu_count-1 in exactly one domain, the domains' memory summing to `memory` in whole pages,
// a domain's memory 0 (CPUs only) or at least 4 MiB (Linux ignores smaller nodes), at most kMaxNumaNodes
// domains, a square distance matrix with 10 on its diagonal only. InvalidArgument naming the problem.
absl::Status ValidateNumaTopology(const NumaTopology& topology, uint32_t vcpu_count, uint64_t memory);

// The guest-physical ranges of each domain's RAM: domains take RAM in order from the bottom of `ram` (the
// regions below and above the PCI hole), so a domain may own a piece of each side of the hole.
struct NumaMemoryRange {
  uint64_t base;
  uint64_t length;
  uint32_t domain;
};
std::vector<NumaMemoryRange> NumaMemoryRanges(const NumaTopology& topology, const std::vector<MemoryRegion>& ram);

}  // namespace coalesce
