#include "edge_monitor/discovery.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "edge_monitor/size.h"
#include "edge_monitor/vcpu_list.h"

namespace coalesce {
namespace {

uint32_t FreeVcpus(const pb::Capacity& cap) {
  return cap.total_vcpus() - std::min(cap.reserved_vcpus(), cap.total_vcpus());
}

double LoadPerCpu(const pb::Capacity& cap) {
  return cap.host_cpus() > 0 ? cap.load_average_1m() / cap.host_cpus() : 0.0;
}

// Why a reachable candidate cannot take any vCPU under the policy; empty if it can.
std::string PassedOver(const EdgeCandidate& c, const DiscoveryPolicy& policy) {
  if (!c.reachable.ok()) return absl::StrCat("unreachable: ", c.reachable.message());
  const pb::Capacity& cap = c.capacity;
  const uint32_t free_vcpus = FreeVcpus(cap);
  const uint64_t free_memory = cap.total_memory_bytes() - std::min(cap.reserved_memory_bytes(), cap.total_memory_bytes());
  if (free_vcpus == 0) return absl::StrCat("no free vCPUs (", cap.total_vcpus(), " offered, all in use)");
  if (free_memory < policy.guest_memory) {
    return absl::StrCat("memory ", FormatSize(free_memory), " free, the guest needs ", FormatSize(policy.guest_memory));
  }
  const double load = LoadPerCpu(cap);
  if (policy.max_edge_load > 0 && load > policy.max_edge_load) {
    return absl::StrFormat("load %.2f per CPU, over policies.max_edge_load %.2f", load, policy.max_edge_load);
  }
  if (c.rtt > policy.latency_bound) {
    return absl::StrFormat("control-plane round trip %.3f ms, over policies.latency_bound_us %d",
                           absl::ToDoubleMilliseconds(c.rtt), absl::ToInt64Microseconds(policy.latency_bound));
  }
  return "";
}

}  // namespace

std::vector<EdgeCandidate> QueryCandidates(const std::vector<std::string>& addresses,
                                           const EdgeAgentClientOptions& options, absl::Duration timeout) {
  std::vector<EdgeCandidate> out(addresses.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < addresses.size(); ++i) {
    threads.emplace_back([&, i] {
      EdgeCandidate& c = out[i];
      c.address = addresses[i];
      EdgeAgentClientOptions o = options;
      o.connect_timeout = timeout;
      o.rpc_timeout = timeout;
      absl::StatusOr<std::unique_ptr<EdgeAgentClient>> client = EdgeAgentClient::Connect(addresses[i], o);
      if (!client.ok()) {
        c.reachable = client.status();
        return;
      }
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<pb::Capacity> cap = (*client)->GetCapacity();
      c.rtt = absl::FromChrono(std::chrono::steady_clock::now() - start);
      if (!cap.ok()) {
        c.reachable = cap.status();
        return;
      }
      c.capacity = *std::move(cap);
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

absl::StatusOr<std::vector<DiscoveredEdge>> PlanPlacement(const std::vector<EdgeCandidate>& candidates,
                                                          const std::vector<uint32_t>& vcpus,
                                                          const DiscoveryPolicy& policy) {
  std::vector<const EdgeCandidate*> usable;
  for (const EdgeCandidate& c : candidates) {
    if (PassedOver(c, policy).empty()) usable.push_back(&c);
  }
  std::stable_sort(usable.begin(), usable.end(),
                   [](const EdgeCandidate* a, const EdgeCandidate* b) { return a->rtt < b->rtt; });
  std::vector<DiscoveredEdge> plan;
  size_t next = 0;
  for (const EdgeCandidate* c : usable) {
    if (next == vcpus.size()) break;
    uint32_t take = FreeVcpus(c->capacity);
    if (policy.max_edge_vcpus > 0) take = std::min(take, policy.max_edge_vcpus);
    DiscoveredEdge edge{c->address, {}};
    for (uint32_t k = 0; k < take && next < vcpus.size(); ++k) edge.vcpus.push_back(vcpus[next++]);
    plan.push_back(std::move(edge));
  }
  if (next < vcpus.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--discover: the candidates take ", next, " of the ", vcpus.size(), " vCPUs to lend (",
        FormatVcpuList(vcpus), "):\n", DescribeCandidates(candidates, plan, policy)));
  }
  return plan;
}

std::string DescribeCandidates(const std::vector<EdgeCandidate>& candidates, const std::vector<DiscoveredEdge>& plan,
                               const DiscoveryPolicy& policy) {
  std::vector<std::string> lines;
  for (const EdgeCandidate& c : candidates) {
    std::string line = absl::StrCat("  ", c.address, ": ");
    if (c.reachable.ok()) {
      const pb::Capacity& cap = c.capacity;
      absl::StrAppendFormat(&line, "round trip %.3f ms, %u of %u vCPUs free, load %.2f per CPU",
                            absl::ToDoubleMilliseconds(c.rtt), FreeVcpus(cap), cap.total_vcpus(),
                            LoadPerCpu(cap));
      if (cap.has_battery_percent()) {
        absl::StrAppendFormat(&line, ", battery %u%%%s", cap.battery_percent(), cap.on_battery() ? " (discharging)" : "");
      }
      line += ": ";
    }
    const std::string why = PassedOver(c, policy);
    const auto given = std::find_if(plan.begin(), plan.end(), [&](const DiscoveredEdge& e) { return e.address == c.address; });
    if (!why.empty()) {
      line += absl::StrCat("passed over: ", why);
    } else if (given != plan.end() && !given->vcpus.empty()) {
      line += absl::StrCat("vCPUs ", FormatVcpuList(given->vcpus));
    } else {
      line += "not needed";
    }
    lines.push_back(std::move(line));
  }
  return absl::StrJoin(lines, "\n");
}

}  // namespace coalesce
