#include "hypervisor/machine/coalescence_home.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>

#include "absl/strings/str_format.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "dsm/link_spec.h"
#include "edge_monitor/size.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/small_file.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/vcpu/exit_status.h"

namespace coalesce {
namespace {

constexpr absl::Duration kNodeStartTimeout = absl::Seconds(30);
constexpr absl::Duration kProbeTimeout = absl::Seconds(5);

// MemAvailable from /proc/meminfo, in bytes; nullopt where it cannot be read.
std::optional<uint64_t> HostMemAvailable() {
  absl::StatusOr<std::string> meminfo = ReadSmallFile("/proc/meminfo", 64 * 1024, "meminfo");
  if (!meminfo.ok()) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*meminfo, '\n')) {
    unsigned long long kib = 0;
    if (absl::ConsumePrefix(&line, "MemAvailable:") &&
        absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(line), " kB"), &kib)) {
      return kib * 1024;
    }
  }
  return std::nullopt;
}

}  // namespace

absl::Status CheckHomeCanTakeBack(uint64_t lent_bytes, const std::string& agent_address) {
  const std::optional<uint64_t> available = HostMemAvailable();
  if (available && *available < lent_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "memory edge %s refused: home could not take back the %s it would hold when it leaves (%s available "
        "here)",
        agent_address, FormatSize(lent_bytes), FormatSize(*available)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CoalescenceHome>> CoalescenceHome::Start(const CoalescenceConfig& config,
                                                                        GuestMemory& memory, Handlers handlers) {
  if (config.edges.size() + 1 > dsm::kMaxNodes) {
    return absl::InvalidArgumentError(absl::StrFormat("at most %d edge nodes", dsm::kMaxNodes - 1));
  }
  std::unique_ptr<CoalescenceHome> home(new CoalescenceHome(config, std::move(handlers)));
  std::random_device rd;
  home->vm_id_ = absl::StrFormat("coalesce-%d-%08x", ::getpid(), rd());
  CoalescenceHome* raw = home.get();
  home->renewer_ = std::make_unique<LeaseRenewer>(config.lease_seconds);
  // Fresh per run: the data plane is always sealed (dsm/frame_cipher.h), loopback included.
  ASSIGN_OR_RETURN(home->secret_, dsm::DataPlaneSecret::Generate());
  dsm::DsmNodeConfig cfg;
  cfg.data_plane_secret = home->secret_;
  cfg.link = config.link;
  // Home-only memory, as DSM pages (memfd offsets): never on the wire, whatever asks for it.
  for (const GuestRange& r : config.home_only_memory) {
    ASSIGN_OR_RETURN(const uint64_t offset, GuestMemory::FileOffset(memory.regions(), r.start, r.size));
    cfg.never_send.emplace_back(offset / dsm::kPageSize, (offset + r.size) / dsm::kPageSize);
  }
  cfg.self = 0;
  cfg.home = 0;
  // A loopback data plane listens on loopback only; another address (allowed with --insecure) on every interface.
  cfg.listen_address = IsLoopbackHost(config.data_plane_host) ? config.data_plane_host : "0.0.0.0";
  cfg.listen_port = config.data_plane_port;
  cfg.on_error = [raw](const absl::Status& st) {
    {
      absl::MutexLock lock(&raw->mu_);
      if (raw->stopped_) return;  // nodes leaving after the VM stopped are no loss
    }
    if (raw->handlers_.on_stop) {
      raw->handlers_.on_stop(exit_status::kHostFailure, absl::StrFormat("lost an edge node: %s", st.message()));
    }
  };
  ASSIGN_OR_RETURN(home->link_, NodeLink::Create(cfg, memory.memfd(), memory.host_base(), memory.size(),
                                                 [raw](uint16_t from, node_msg::NodeMessage m) {
                                                   raw->OnMessage(from, std::move(m));
                                                 }));
  home->memory_bytes_ = memory.boot_size();
  home->hotplug_memory_bytes_ = memory.hotplug_size();
  if (config.home_memory_allowance != 0) {
    home->link_->dsm().SetMemoryAllowance(config.home_memory_allowance / dsm::kPageSize);
  }
  if (absl::Status st = home->HostEdges(); !st.ok()) {
    home->NotifyStop(exit_status::kHostFailure, std::string(st.message()));
    home->Shutdown();
    return st;
  }
  return home;
}

CoalescenceHome::~CoalescenceHome() {
  if (link_) link_->CancelWaiters();
}

absl::Status CoalescenceHome::StartRuntime(const EdgePlacementSpec& edge, uint16_t node, bool vcpus_arrive) {
  const std::string data_plane = !config_.data_plane_advertise.empty()
                                     ? config_.data_plane_advertise
                                     : absl::StrFormat("%s:%u", config_.data_plane_host, link_->dsm().port());
  EdgeAgentClientOptions client_options;
  client_options.security = config_.control_plane;
  ASSIGN_OR_RETURN(auto client, EdgeAgentClient::Connect(edge.agent_address, client_options));
  pb::HostVcpusRequest req;
  req.set_vm_id(absl::StrFormat("%s-n%u", vm_id_, node));
  req.set_guest_memory_bytes(memory_bytes_);
  req.set_hotplug_memory_bytes(hotplug_memory_bytes_);
  req.set_guest_vcpu_count(config_.vcpu_count);
  for (uint32_t v : edge.vcpus) req.add_vcpu_ids(v);
  if (edge.vcpus.empty()) {
    // A memory edge: home must be able to take its pages back when it leaves (they come home then).
    RETURN_IF_ERROR(CheckHomeCanTakeBack(edge.memory_bytes, edge.agent_address));
    req.set_lent_memory_bytes(edge.memory_bytes);
  }
  req.set_home_data_plane_address(data_plane);
  req.set_tsc_offset(config_.tsc_offset);
  req.set_node_id(node);
  req.set_cpu_model(config_.cpu_model);
  req.set_home_only_memory(FormatGuestRanges(config_.home_only_memory));
  if (config_.link.enabled()) req.set_link_emulation(dsm::FormatLinkSpec(config_.link));
  req.set_max_edge_load(config_.max_edge_load);
  req.set_vcpus_arrive(vcpus_arrive);
  req.set_lease_seconds(config_.lease_seconds);
  req.set_data_plane_key(std::string(reinterpret_cast<const char*>(secret_->bytes().data()),
                                     secret_->bytes().size()));
  EdgeAgentClient* agent = client.get();
  {
    absl::MutexLock lock(&nodes_mu_);
    agents_.push_back(std::move(client));
    edges_.push_back(edge);
  }
  ASSIGN_OR_RETURN(pb::VmStatus status, agent->HostVcpus(req));
  if (edge.vcpus.empty()) {
    LOG_INFO("edge %s lends %s of memory as node %u (runtime pid %u, lease %.1f s)", edge.agent_address,
             FormatSize(edge.memory_bytes), node, status.runtime_pid(), status.lease_ms_left() / 1000.0);
  } else {
    LOG_INFO("edge %s hosts vCPUs %s as node %u (runtime pid %u, lease %.1f s)", edge.agent_address,
             absl::StrJoin(edge.vcpus, ","), node, status.runtime_pid(), status.lease_ms_left() / 1000.0);
  }
  // An agent that grants no lease (an older one) is not renewed.
  if (status.lease_ms_left() > 0) {
    renewer_->Add(node, agent, req.vm_id(), absl::Milliseconds(status.lease_ms_left()));
  }
  return absl::OkStatus();
}

absl::Status CoalescenceHome::JoinNodes(uint16_t first, uint16_t last) {
  // Every new runtime says hello once it is connected to us; each gets the nodes to connect to (those before it
  // that are still in the VM; the one with the larger id connects) and the mesh is awaited.
  node_msg::Peers peers;
  {
    absl::MutexLock lock(&mu_);
    auto all_hello = [this, first, last]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      size_t n = 0;
      for (const node_msg::PeerInfo& p : hellos_) n += p.node_id >= first && p.node_id <= last;
      return n == static_cast<size_t>(last - first + 1) || stopped_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&all_hello), kNodeStartTimeout) || stopped_) {
      return absl::DeadlineExceededError("edge nodes did not introduce themselves on the data plane in time");
    }
    for (const node_msg::PeerInfo& p : hellos_) {
      if (p.node_id >= released_.size() || !released_[p.node_id]) peers.peers.push_back(p);
    }
  }
  for (uint16_t node = first; node <= last; ++node) RETURN_IF_ERROR(link_->Send(node, peers));
  absl::MutexLock lock(&mu_);
  auto all_ready = [this, first, last]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t n = 0;
    for (uint16_t node : mesh_ready_) n += node >= first && node <= last;
    return n == static_cast<size_t>(last - first + 1) || stopped_;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&all_ready), kNodeStartTimeout) || stopped_) {
    return absl::DeadlineExceededError("edge nodes did not connect to each other in time");
  }
  return absl::OkStatus();
}

absl::Status CoalescenceHome::HostEdges() {
  for (size_t i = 0; i < config_.edges.size(); ++i) {
    RETURN_IF_ERROR(StartRuntime(config_.edges[i], static_cast<uint16_t>(i + 1), /*vcpus_arrive=*/false));
  }
  RETURN_IF_ERROR(JoinNodes(1, static_cast<uint16_t>(config_.edges.size())));
  const std::vector<MemoryShare>& shares = config_.boot_memory_shares;
  for (size_t i = 0; i < config_.edges.size(); ++i) {
    OfferMemory(config_.edges[i], static_cast<uint16_t>(i + 1), i < shares.size() ? shares[i] : MemoryShare{});
  }
  return absl::OkStatus();
}

// A memory edge in the mesh takes the home's spilled pages from now on, those of its share of boot RAM first.
void CoalescenceHome::OfferMemory(const EdgePlacementSpec& edge, uint16_t node, MemoryShare share) {
  if (edge.vcpus.empty() && edge.memory_bytes != 0) {
    link_->dsm().SetMemoryNode(node, edge.memory_bytes / dsm::kPageSize,
                               {share.offset / dsm::kPageSize, (share.offset + share.length) / dsm::kPageSize});
  }
}

absl::StatusOr<uint16_t> CoalescenceHome::AttachEdge(const EdgePlacementSpec& edge) {
  absl::MutexLock attaching(&attach_mu_);
  const uint16_t node = static_cast<uint16_t>(edge_count() + 1);
  if (node >= dsm::kMaxNodes) return absl::ResourceExhaustedError(absl::StrFormat("at most %d nodes", dsm::kMaxNodes));
  absl::Status st = StartRuntime(edge, node, /*vcpus_arrive=*/true);
  if (st.ok()) st = JoinNodes(node, node);
  if (st.ok()) OfferMemory(edge, node, MemoryShare{});  // no share of boot RAM: attached after boot
  if (!st.ok()) {
    if (edge_count() < node) return st;  // refused before it was a node (unreachable agent): its id stays free
    // The node never joined: nothing is sent to it, and its runtime (if it started) is stopped.
    {
      absl::MutexLock lock(&mu_);
      if (released_.size() <= node) released_.resize(node + 1, false);
      released_[node] = true;
    }
    renewer_->Remove(node);
    if (EdgeAgentClient* agent = Agents().size() >= node ? Agents()[node - 1] : nullptr) {
      (void)agent->StopVm(absl::StrFormat("%s-n%u", vm_id_, node), absl::Seconds(2));
    }
    return st;
  }
  return node;
}

size_t CoalescenceHome::edge_count() const {
  absl::MutexLock lock(&nodes_mu_);
  return edges_.size();
}

std::vector<std::string> CoalescenceHome::EdgeAddresses() const {
  absl::MutexLock lock(&nodes_mu_);
  std::vector<std::string> out;
  for (const EdgePlacementSpec& e : edges_) out.push_back(e.agent_address);
  return out;
}

std::vector<EdgeAgentClient*> CoalescenceHome::Agents() const {
  absl::MutexLock lock(&nodes_mu_);
  std::vector<EdgeAgentClient*> out;
  for (const auto& a : agents_) out.push_back(a.get());
  return out;
}

void CoalescenceHome::OnMessage(uint16_t from, node_msg::NodeMessage message) {
  if (auto* io = std::get_if<node_msg::IoRequest>(&message)) {
    std::vector<uint8_t> data;
    handlers_.on_io(*io, &data);
    io_served_.fetch_add(1, std::memory_order_relaxed);
    if (absl::Status st = link_->Send(from, node_msg::IoReply{io->request_id, std::move(data)}); !st.ok()) {
      LOG_WARN("answering node %u: %s", from, st.ToString());
    }
  } else if (auto* irq = std::get_if<node_msg::Interrupt>(&message)) {
    // Remote routers send everything that is not theirs here; deliver ours and relay the rest.
    interrupts_relayed_.fetch_add(handlers_.deliver_from_node(from, irq->message), std::memory_order_relaxed);
  } else if (auto* eoi = std::get_if<node_msg::Eoi>(&message)) {
    handlers_.on_eoi(eoi->vector);
  } else if (auto* stop = std::get_if<node_msg::Stop>(&message)) {
    handlers_.on_stop(stop->exit_status, stop->reason);
  } else if (auto* hello = std::get_if<node_msg::Hello>(&message)) {
    absl::MutexLock lock(&mu_);
    hellos_.push_back({hello->node_id, hello->dsm_port, hello->host});
  } else if (std::holds_alternative<node_msg::MeshReady>(message)) {
    absl::MutexLock lock(&mu_);
    mesh_ready_.push_back(from);  // the connection says who it is, not the message
  } else if (std::holds_alternative<node_msg::VcpuDetached>(message) ||
             std::holds_alternative<node_msg::VcpuMigrate>(message) ||
             std::holds_alternative<node_msg::VcpuArrived>(message) || std::holds_alternative<node_msg::Leaving>(message)) {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;  // the VM stops: nothing moves, nobody leaves
    }
    if (handlers_.on_move) handlers_.on_move(from, message);
  } else if (auto* done = std::get_if<node_msg::PauseDone>(&message)) {
    if (handlers_.on_pause_done) handlers_.on_pause_done(from, *done);
  } else if (auto* reply = std::get_if<node_msg::EchoReply>(&message)) {
    absl::MutexLock lock(&mu_);
    // Only the probe in flight counts; a late answer to one that timed out is dropped.
    if (reply->token == echo_sent_) echo_answered_ = reply->token;
  } else {
    LOG_WARN("unexpected node message from node %u", from);
  }
}

void CoalescenceHome::SendInterrupt(uint16_t node, const ApicMessage& msg) {
  if (absl::Status st = link_->Send(node, node_msg::Interrupt{msg}); !st.ok()) {
    LOG_WARN("forwarding an interrupt to node %u: %s", node, st.ToString());
  }
}

void CoalescenceHome::NotifyStop(int status, const std::string& reason) {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  for (uint16_t node = 1; node <= edge_count(); ++node) {
    if (!Released(node)) (void)link_->Send(node, node_msg::Stop{status, reason});
  }
  link_->CancelWaiters();
}

bool CoalescenceHome::Released(uint16_t node) {
  absl::MutexLock lock(&mu_);
  return node < released_.size() && released_[node];
}

void CoalescenceHome::ReleaseNode(uint16_t node) {
  {
    absl::MutexLock lock(&mu_);
    if (released_.size() <= node) released_.resize(node + 1, false);
    if (released_[node]) return;
    released_[node] = true;
  }
  renewer_->Remove(node);
  link_->dsm().RemoveMemoryNode(node);  // nothing more is spilled to it
  // It hands its pages back as it leaves the DSM, then exits (a Stop would drop them).
  (void)link_->Send(node, node_msg::Leaving{"its vCPUs moved home"});
}

void CoalescenceHome::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  // The nodes hear that the VM stops before their agents signal them: a runtime signalled first would take the
  // signal for its agent leaving and ask to hand its vCPUs home (a VM refused at start never said Stop).
  NotifyStop(0, "the VM stopped");
  renewer_->Stop();
  const std::vector<EdgeAgentClient*> agents = Agents();
  for (size_t i = 0; i < agents.size(); ++i) {
    if (Released(static_cast<uint16_t>(i + 1))) continue;
    auto st = agents[i]->StopVm(absl::StrFormat("%s-n%u", vm_id_, i + 1), absl::Seconds(2));
    if (!st.ok()) LOG_INFO("stopping node %u: %s", i + 1, st.status().ToString());
  }
  link_->dsm().Stop();
}

absl::StatusOr<std::vector<absl::Duration>> CoalescenceHome::MeasureRoundTrips(int probes) {
  absl::MutexLock probing(&probe_mu_);
  const std::vector<std::string> edges = EdgeAddresses();
  std::vector<absl::Duration> rtt(edges.size() + 1, absl::ZeroDuration());
  for (uint16_t node = 1; node <= edges.size(); ++node) {
    if (Released(node)) continue;
    std::vector<absl::Duration> samples;
    for (int p = 0; p < std::max(probes, 1); ++p) {
      uint64_t token;
      {
        absl::MutexLock lock(&mu_);
        token = ++echo_sent_;
      }
      const auto start = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(link_->Send(node, node_msg::Echo{token}));
      absl::MutexLock lock(&mu_);
      auto answered = [this, token]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return echo_answered_ == token; };
      if (!mu_.AwaitWithTimeout(absl::Condition(&answered), kProbeTimeout)) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "node %u (edge %s) did not answer a round-trip probe within %s", node,
            edges[node - 1], absl::FormatDuration(kProbeTimeout)));
      }
      samples.push_back(absl::FromChrono(std::chrono::steady_clock::now() - start));
    }
    std::sort(samples.begin(), samples.end());
    rtt[node] = samples[samples.size() / 2];
  }
  return rtt;
}

std::string CoalescenceHome::StatsReport() const {
  return absl::StrFormat("data plane: remote I/O accesses served=%u, interrupts relayed=%u, malformed messages=%u\n%s",
                         io_served_.load(), interrupts_relayed_.load(), link_->malformed(),
                         link_->dsm().FormatStats());
}

}  // namespace coalesce
