#include "vcpu_remote/remote_node.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_format.h"
#include "dsm/link_spec.h"
#include "edge_monitor/guest_ranges.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/host_request_validator.h"
#include "edge_monitor/remote_node_args.h"
#include "edge_monitor/runtime_stop_reason.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/signal_stopper.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/base/thread_name.h"
#include "hypervisor/base/timer_service.h"
#include "hypervisor/irq/local_apic.h"
#include "hypervisor/kvm/kvm_system.h"
#include "hypervisor/memory/guest_memory.h"
#include "hypervisor/vcpu/cpuid.h"
#include "hypervisor/vcpu/exit_status.h"
#include "hypervisor/vcpu/node_vcpus.h"
#include "hypervisor/vcpu/pause_gate.h"
#include "hypervisor/vcpu/vcpu.h"
#include "vcpu_remote/forwarding_router.h"
#include "vcpu_remote/node_link.h"
#include "vcpu_remote/remote_io_handler.h"
#include "vcpu_remote/runtime_sandbox.h"
#include "vcpu_remote/vcpu_mover.h"

namespace coalesce {
namespace {

constexpr absl::Duration kIoTimeout = absl::Seconds(10);
constexpr absl::Duration kMeshTimeout = absl::Seconds(15);
// How long this node's vCPUs get to reach their pause gates (the home waits longer for the answer).
constexpr absl::Duration kPauseTimeout = absl::Seconds(5);
// How long a leaving node waits for the home to take its vCPUs (inside the agent's departure grace).
constexpr std::chrono::seconds kDepartureTimeout{12};

// The local address this host uses to reach `host` (no packet is sent: a UDP connect only picks a route).
std::string LocalAddressToward(const std::string& host) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(9);
  if (!fd.valid() || ::inet_pton(AF_INET, host.c_str(), &dst.sin_addr) != 1 ||
      ::connect(fd.get(), reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) < 0) {
    return "127.0.0.1";
  }
  sockaddr_in self{};
  socklen_t len = sizeof(self);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&self), &len) < 0) return "127.0.0.1";
  char buf[INET_ADDRSTRLEN];
  return ::inet_ntop(AF_INET, &self.sin_addr, buf, sizeof(buf)) ? buf : "127.0.0.1";
}

static_assert(kDataPlaneKeyBytes == dsm::kDataPlaneSecretSize, "the agent's key check and the DSM's key agree");

// The VM's data-plane secret from the agent's pipe: exactly kDataPlaneSecretSize bytes, then EOF.
absl::StatusOr<dsm::DataPlaneSecret> ReadDataPlaneKey(int fd) {
  UniqueFd pipe(fd);
  uint8_t buf[dsm::kDataPlaneSecretSize + 1];
  size_t got = 0;
  while (got < sizeof(buf)) {
    const ssize_t n = ::read(fd, buf + got, sizeof(buf) - got);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrFormat("reading the data-plane key from fd %d", fd));
    }
    got += static_cast<size_t>(n);
  }
  auto secret = dsm::DataPlaneSecret::FromBytes(std::span<const uint8_t>(buf, got));
  OPENSSL_cleanse(buf, sizeof(buf));
  if (!secret.ok()) return absl::InvalidArgumentError(absl::StrFormat("fd %d: %s", fd, secret.status().message()));
  return secret;
}

class RemoteNode final {
 public:
  RemoteNode(RemoteNodeArgs args, dsm::DataPlaneSecret secret) : args_(std::move(args)), secret_(std::move(secret)) {}
  ~RemoteNode() {
    if (link_) link_->CancelWaiters();
    for (auto& v : vcpus_) {
      if (v) v->Kick();
    }
    StopPauser();
    JoinMovers();
    for (auto& v : vcpus_) {
      if (v) v->Join();
    }
    // No LAPIC timer may kick a vCPU while the members are destroyed.
    if (timers_) timers_->Stop();
  }

  absl::Status Build();
  int Run();
  // Guest RAM's mapping in this process (kept out of core dumps by the sandbox).
  [[nodiscard]] std::pair<void*, size_t> guest_ram() const { return {memory_->host_base(), memory_->size()}; }
  // Asked to stop from outside (the agent's SIGTERM): a normal end for this node.
  // Once the node runs, it leaves instead (docs/COALESCENCE.md "Departure"): the home is asked to take its vCPUs
  // and then tells it to stop; its pages go home as it leaves the DSM. Any thread (the signal thread).
  void RequestStop(std::string reason) {
    if (running_.load() && !run_control_.stopping() && !leaving_.exchange(true)) {
      if (absl::Status st = link_->Send(0, node_msg::Leaving{reason}); st.ok()) {
        LOG_INFO("node %u: leaving (%s): the home takes its vCPUs", args_.node_id, reason);
        return;
      }
    }
    stopped_by_home_ = true;
    run_control_.Stop(0, std::move(reason));
  }

 private:
  void OnMessage(uint16_t from, node_msg::NodeMessage message);
  absl::Status JoinMesh(const node_msg::Peers& peers);
  // Home asked for vCPU `id` back: detached from the router at once (on the receiver thread, so the home
  // knows which of our interrupts its APIC took here), parked and sent on a mover thread (a vCPU may be
  // waiting for a forwarded access whose reply this receiver thread must read first).
  void Evict(uint32_t id);
  void SendHome(uint32_t id);
  // A vCPU sent here: state restored, registered with the router, running; the home told.
  void Arrive(const node_msg::VcpuMigrate& message);
  // The home pauses or resumes the guest: queued for the pauser thread, which handles the requests in order
  // (a hold waits for the vCPUs to reach their gates, and a release must never overtake it, or the node would
  // stay paused) and off this receiver thread (a vCPU may be waiting for a forwarded access whose reply this
  // thread must read first).
  void OnPause(const node_msg::Pause& pause);
  // The pauser thread: holds or releases this node's vCPUs, one request at a time, and answers with PauseDone.
  void PauserLoop();
  // Ends the pauser once it answered what was queued; later requests are answered at once (OnPause).
  void StopPauser();
  void AnswerPause(const node_msg::PauseDone& done);
  [[nodiscard]] bool ValidMovable(uint32_t id) const { return id != 0 && id < vcpus_.size() && vcpus_[id]; }
  void JoinMovers();

  RemoteNodeArgs args_;
  RunControl run_control_;
  std::unique_ptr<KvmSystem> kvm_;
  std::unique_ptr<VmFd> vm_;
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<TimerService> timers_;
  std::unique_ptr<ForwardingInterruptRouter> router_;
  std::unique_ptr<NodeLink> link_;
  std::unique_ptr<RemoteIoHandler> io_;
  // Indexed by vCPU id, every vCPU of the guest but the BSP: those placed here run, the others wait idle
  // for a move (KVM cannot destroy a vCPU, so each id is created once, at start).
  std::vector<std::unique_ptr<LocalApic>> lapics_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  absl::Mutex movers_mu_;
  std::vector<std::thread> movers_ ABSL_GUARDED_BY(movers_mu_);  // one per move home: each waits for its vCPU
  absl::Mutex pause_mu_;
  std::deque<node_msg::Pause> pause_requests_ ABSL_GUARDED_BY(pause_mu_);
  bool pauser_stopping_ ABSL_GUARDED_BY(pause_mu_) = false;
  bool pauser_gone_ ABSL_GUARDED_BY(pause_mu_) = false;  // joined: OnPause answers itself
  std::thread pauser_;
  absl::Mutex mesh_mu_;
  std::optional<node_msg::Peers> peers_ ABSL_GUARDED_BY(mesh_mu_);
  std::atomic<bool> stopped_by_home_{false};
  std::atomic<bool> running_{false};  // vCPUs started: a stop request becomes a departure
  std::atomic<bool> leaving_{false};
  const dsm::DataPlaneSecret secret_;
};

absl::Status RemoteNode::Build() {
  ASSIGN_OR_RETURN(KvmSystem kvm, args_.kvm_fd >= 0 ? KvmSystem::FromFd(UniqueFd(args_.kvm_fd), "--kvm-fd")
                                                    : KvmSystem::Open());
  kvm_ = std::make_unique<KvmSystem>(std::move(kvm));
  ASSIGN_OR_RETURN(VmFd vm, kvm_->CreateVm());
  vm_ = std::make_unique<VmFd>(std::move(vm));
  ASSIGN_OR_RETURN(GuestMemory mem, GuestMemory::Create(args_.guest_memory_bytes, args_.hotplug_memory_bytes));
  memory_ = std::make_unique<GuestMemory>(std::move(mem));
  // Home-only memory gets no memslot here: this node's vCPUs reach it by forwarded accesses, never by page.
  std::vector<std::pair<uint64_t, uint64_t>> holes;
  if (!args_.home_only_memory.empty()) {
    ASSIGN_OR_RETURN(std::vector<GuestRange> ranges, ParseGuestRanges(args_.home_only_memory, "--home-only-memory"));
    for (const GuestRange& r : ranges) holes.emplace_back(r.start, r.end());
  }
  RETURN_IF_ERROR(memory_->RegisterWith(*vm_, holes));
  timers_ = std::make_unique<TimerService>();

  // Placement as this node knows it: its own vCPUs here, every other APIC id "elsewhere". Physical
  // destinations it does not hold go to the home node, which forwards them on (it knows the whole map).
  // vCPUs that arrive later (ctl attach) are at home until they do.
  std::vector<uint16_t> node_of_apic(args_.guest_vcpu_count, 0);
  if (!args_.vcpus_arrive) {
    for (uint32_t id : args_.vcpu_ids) node_of_apic[id] = static_cast<uint16_t>(args_.node_id);
  }
  router_ = std::make_unique<ForwardingInterruptRouter>(
      static_cast<uint16_t>(args_.node_id), node_of_apic,
      [this](uint16_t node, const ApicMessage& msg) {
        if (absl::Status st = link_->Send(node, node_msg::Interrupt{msg}); !st.ok()) {
          LOG_WARN("node %u: forwarding an interrupt to node %u: %s", args_.node_id, node, st.ToString());
        }
      },
      [this](uint8_t vector) { (void)link_->Send(0, node_msg::Eoi{vector}); });

  auto [host, port] = *ParseHostPort(args_.home_address, "home");
  dsm::DsmNodeConfig cfg;
  cfg.self = static_cast<dsm::NodeId>(args_.node_id);
  cfg.home = 0;
  cfg.listen_address = "0.0.0.0";
  cfg.data_plane_secret = secret_;
  cfg.userfaultfd_device = args_.userfaultfd_device_fd;
  if (!args_.link.empty()) {
    ASSIGN_OR_RETURN(cfg.link, dsm::ParseLinkSpec(args_.link, "--link"));
  }
  cfg.on_error = [this](const absl::Status& st) {
    run_control_.Stop(exit_status::kHostFailure, absl::StrFormat("node %u: %s", args_.node_id, st.message()));
  };
  ASSIGN_OR_RETURN(link_, NodeLink::Create(cfg, memory_->memfd(), memory_->host_base(), memory_->size(),
                                           [this](uint16_t from, node_msg::NodeMessage m) { OnMessage(from, std::move(m)); }));
  RETURN_IF_ERROR(link_->dsm().Connect({0, host, port}));
  RETURN_IF_ERROR(link_->dsm().WaitForPeers({0}, absl::Seconds(10)));
  io_ = std::make_unique<RemoteIoHandler>(link_.get(), &run_control_, kIoTimeout);

  NodeVcpusSpec spec;
  spec.vcpu_count = args_.guest_vcpu_count;
  spec.first_id = 1;
  spec.model = args_.cpu_model == "host" ? CpuModel::kHost : CpuModel::kBaseline;
  spec.private_caches = true;  // an edge's vCPUs are on another host than the home's
  spec.tsc_offset = args_.tsc_offset;
  spec.wiring.io = io_.get();
  spec.wiring.run_control = &run_control_;
  spec.wiring.memory = memory_.get();
  vcpus_.resize(args_.guest_vcpu_count);
  CreateNodeApics(spec, router_.get(), timers_.get(), [this](uint32_t id) {
    if (vcpus_[id]) vcpus_[id]->Kick();
  }, &lapics_);
  RETURN_IF_ERROR(CreateNodeVcpus(spec, *kvm_, *vm_, lapics_, &vcpus_));
  for (uint32_t id : args_.vcpu_ids) {
    if (!ValidMovable(id)) return absl::InvalidArgumentError(absl::StrFormat("vCPU %u cannot run on an edge", id));
    if (!args_.vcpus_arrive) RETURN_IF_ERROR(router_->AddApic(lapics_[id].get()));
  }
  run_control_.AddStopHook([this] {
    link_->CancelWaiters();
    for (auto& v : vcpus_) {
      if (v) v->Kick();
    }
  });
  pauser_ = StartNamedThread("pauser", [this] { PauserLoop(); });
  return link_->Send(0, node_msg::Hello{static_cast<uint16_t>(args_.node_id), link_->dsm().port(),
                                        LocalAddressToward(host)});
}

void RemoteNode::OnMessage(uint16_t from, node_msg::NodeMessage message) {
  if (auto* irq = std::get_if<node_msg::Interrupt>(&message)) {
    router_->DeliverFromNode(from, irq->message);
  } else if (auto* directed = std::get_if<node_msg::DirectedInterrupt>(&message)) {
    router_->DeliverDirected(directed->apic_id, directed->message);
  } else if (auto* evict = std::get_if<node_msg::VcpuEvict>(&message); evict && from == 0) {
    Evict(evict->vcpu_id);
  } else if (auto* migrate = std::get_if<node_msg::VcpuMigrate>(&message); migrate && from == 0) {
    Arrive(*migrate);
  } else if (auto* pause = std::get_if<node_msg::Pause>(&message); pause && from == 0) {
    OnPause(*pause);
  } else if (std::holds_alternative<node_msg::Leaving>(message) && from == 0) {
    // The home took every vCPU of this node (this node asked, or the home decided: a degraded link): leave.
    leaving_ = true;
    stopped_by_home_ = true;
    run_control_.Stop(0, std::get<node_msg::Leaving>(message).reason);
  } else if (auto* stop = std::get_if<node_msg::Stop>(&message)) {
    stopped_by_home_ = from == 0;
    run_control_.Stop(stop->exit_status, stop->reason);
  } else if (auto* peers = std::get_if<node_msg::Peers>(&message)) {
    absl::MutexLock lock(&mesh_mu_);
    peers_ = *peers;
  } else if (auto* echo = std::get_if<node_msg::Echo>(&message)) {
    // Home's round-trip probe: answered at once, on this receiver thread, so the reply measures the link.
    if (absl::Status st = link_->Send(from, node_msg::EchoReply{echo->token}); !st.ok()) {
      LOG_WARN("node %u: answering a probe from node %u: %s", args_.node_id, from, st.ToString());
    }
  } else {
    LOG_WARN("node %u: unexpected message from node %u", args_.node_id, from);
  }
}

void RemoteNode::Evict(uint32_t id) {
  if (!ValidMovable(id) || router_->NodeOf(id) != args_.node_id) {
    LOG_WARN("node %u: the home asked for vCPU %u, which does not run here", args_.node_id, id);
    return;
  }
  absl::Status st = router_->Detach(id, 0, [&] { return link_->Send(0, node_msg::VcpuDetached{id}); });
  if (!st.ok()) {
    run_control_.Stop(exit_status::kHostFailure, absl::StrFormat("node %u: detaching vCPU %u: %s", args_.node_id, id,
                                                                 st.message()));
    return;
  }
  absl::MutexLock lock(&movers_mu_);
  movers_.push_back(StartNamedThread("vcpu-mover", [this, id] { SendHome(id); }));
}

void RemoteNode::SendHome(uint32_t id) {
  absl::StatusOr<ParkedVcpu> parked = ParkAndCapture(*vcpus_[id]);
  absl::Status st = parked.status();
  if (st.ok()) st = link_->Send(0, SealMove(*parked, *lapics_[id]));
  if (!st.ok() && !run_control_.stopping()) {
    // The vCPU is neither here nor at home: the guest cannot go on.
    run_control_.Stop(exit_status::kHostFailure,
                      absl::StrFormat("node %u: sending vCPU %u home: %s", args_.node_id, id, st.message()));
  }
}

void RemoteNode::Arrive(const node_msg::VcpuMigrate& message) {
  const uint32_t id = message.vcpu_id;
  absl::Status st = ValidMovable(id) ? absl::OkStatus()
                                     : absl::InvalidArgumentError(absl::StrFormat("no vCPU %u here", id));
  absl::StatusOr<Vcpu::RunState> run = st.ok() ? UnpackMove(message, *vcpus_[id], *lapics_[id]) : st;
  if (run.ok()) {
    st = router_->Attach(lapics_[id].get(), [&] { return link_->Send(0, node_msg::VcpuArrived{id}); });
  } else {
    st = run.status();
  }
  if (!st.ok()) {
    run_control_.Stop(exit_status::kHostFailure,
                      absl::StrFormat("node %u: taking vCPU %u: %s", args_.node_id, id, st.message()));
    return;
  }
  vcpus_[id]->Resume(*run);
  LOG_INFO("node %u: vCPU %u arrived and runs here", args_.node_id, id);
}

void RemoteNode::OnPause(const node_msg::Pause& pause) {
  {
    absl::MutexLock lock(&pause_mu_);
    if (!pauser_gone_) {
      pause_requests_.push_back(pause);
      return;
    }
  }
  // The node stops and its pauser is gone: its vCPU threads have ended, so it holds them all (none) already.
  AnswerPause({.token = pause.token, .paused = pause.paused, .vcpus = 0, .error = ""});
}

void RemoteNode::AnswerPause(const node_msg::PauseDone& done) {
  if (absl::Status st = link_->Send(0, done); !st.ok()) {
    LOG_WARN("node %u: answering a pause: %s", args_.node_id, st.ToString());
  }
}

void RemoteNode::PauserLoop() {
  while (true) {
    node_msg::Pause request;
    {
      absl::MutexLock lock(&pause_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pause_mu_) {
        return pauser_stopping_ || !pause_requests_.empty();
      };
      pause_mu_.Await(absl::Condition(&ready));
      // Stopping: what is queued is still answered (quickly: the vCPU threads have ended), so the home never
      // waits out its timeout for this node.
      if (pause_requests_.empty()) return;
      request = pause_requests_.front();
      pause_requests_.pop_front();
    }
    node_msg::PauseDone done{.token = request.token, .paused = false, .vcpus = 0, .error = ""};
    if (request.paused) {
      absl::StatusOr<uint32_t> held = HoldVcpus(run_control_, vcpus_, timers_.get(), kPauseTimeout);
      done.paused = held.ok();
      done.vcpus = held.value_or(0);
      if (held.ok()) {
        LOG_INFO("node %u: paused, %u vCPUs held", args_.node_id, *held);
      } else {
        done.error = std::string(held.status().message());
      }
    } else {
      done.vcpus = ReleaseVcpus(run_control_, vcpus_, timers_.get());
      LOG_INFO("node %u: resumed, %u vCPUs run again", args_.node_id, done.vcpus);
    }
    AnswerPause(done);
  }
}

void RemoteNode::StopPauser() {
  {
    absl::MutexLock lock(&pause_mu_);
    pauser_stopping_ = true;
  }
  if (pauser_.joinable()) pauser_.join();
  absl::MutexLock lock(&pause_mu_);
  pauser_gone_ = true;
  // Anything queued between the last look of the pauser and here is answered now.
  while (!pause_requests_.empty()) {
    const node_msg::Pause p = pause_requests_.front();
    pause_requests_.pop_front();
    AnswerPause({.token = p.token, .paused = p.paused, .vcpus = 0, .error = ""});
  }
}

void RemoteNode::JoinMovers() {
  std::vector<std::thread> movers;
  {
    absl::MutexLock lock(&movers_mu_);
    movers.swap(movers_);
  }
  for (std::thread& t : movers) t.join();
}

absl::Status RemoteNode::JoinMesh(const node_msg::Peers& peers) {
  std::vector<dsm::NodeId> all = {0};
  for (const auto& p : peers.peers) {
    if (p.node_id == args_.node_id) continue;
    all.push_back(p.node_id);
    // The node with the larger id connects.
    if (p.node_id < args_.node_id) RETURN_IF_ERROR(link_->dsm().Connect({p.node_id, p.host, p.dsm_port}));
  }
  return link_->dsm().WaitForPeers(all, kMeshTimeout);
}

int RemoteNode::Run() {
  // The home sends the other remote nodes' addresses once every agent has answered.
  auto have_peers = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mesh_mu_) { return peers_.has_value(); };
  std::optional<node_msg::Peers> peers;
  {
    absl::MutexLock lock(&mesh_mu_);
    if (!mesh_mu_.AwaitWithTimeout(absl::Condition(&have_peers), absl::Seconds(60))) {
      std::fprintf(stderr, "remote-node %u: the home node never sent the peer list\n", args_.node_id);
      return exit_status::kHostFailure;
    }
    peers = peers_;
  }
  if (absl::Status st = JoinMesh(*peers); !st.ok()) {
    std::fprintf(stderr, "remote-node %u: %s\n", args_.node_id, std::string(st.message()).c_str());
    return exit_status::kHostFailure;
  }
  (void)link_->Send(0, node_msg::MeshReady{static_cast<uint16_t>(args_.node_id)});
  if (!args_.vcpus_arrive) {
    for (uint32_t id : args_.vcpu_ids) vcpus_[id]->Start();
  }
  running_.store(true);
  // A departure the home does not complete in time ends as a plain stop (the home then loses this node).
  std::optional<std::chrono::steady_clock::time_point> leave_deadline;
  while (!run_control_.WaitForStop(absl::Milliseconds(200))) {
    if (!leaving_.load()) continue;
    if (!leave_deadline) leave_deadline = std::chrono::steady_clock::now() + kDepartureTimeout;
    if (std::chrono::steady_clock::now() > *leave_deadline) {
      // Told to the home below (a Stop): its guest stops cleanly rather than wait for vCPUs that are gone.
      run_control_.Stop(exit_status::kHostFailure, "leaving: the home did not take this node's vCPUs in time");
    }
  }
  for (auto& v : vcpus_) {
    if (v) v->Kick();
  }
  StopPauser();
  JoinMovers();
  for (auto& v : vcpus_) {
    if (v) v->Join();
  }
  int status = run_control_.exit_status();
  if (!stopped_by_home_) {
    // Our own failure: the home must know, or its guest would wait forever on our vCPUs.
    (void)link_->Send(0, node_msg::Stop{status, absl::StrFormat("node %u: %s", args_.node_id, run_control_.reason())});
    std::fprintf(stderr, "remote-node %u: %s\n", args_.node_id, run_control_.reason().c_str());
  }
  if (std::getenv("COALESCE_DSM_STATS")) {
    std::fprintf(stderr, "remote-node %u: I/O accesses forwarded=%lu, malformed messages=%lu\n", args_.node_id,
                 static_cast<unsigned long>(link_->forwarded_io()), static_cast<unsigned long>(link_->malformed()));
    std::fputs(link_->dsm().FormatStats().c_str(), stderr);
  }
  bool vcpus_left = false;
  for (uint32_t id = 1; id < vcpus_.size(); ++id) vcpus_left |= router_->NodeOf(id) == args_.node_id;
  if (leaving_.load() && stopped_by_home_ && !vcpus_left && status == 0) {
    // Every page this node holds goes back to the home before it goes: the guest runs on without it.
    const auto start = std::chrono::steady_clock::now();
    if (absl::Status st = link_->dsm().Leave(absl::Seconds(5)); !st.ok()) {
      std::fprintf(stderr, "remote-node %u: handing pages back: %s\n", args_.node_id, std::string(st.message()).c_str());
      return exit_status::kHostFailure;
    }
    LOG_INFO("node %u: left; pages handed back in %.1f ms", args_.node_id,
             std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    return 0;
  }
  link_->dsm().Stop();
  // Guest power-off / reset decided at home is a normal end for this node.
  return stopped_by_home_ ? 0 : (status == 0 ? exit_status::kHostFailure : status);
}

}  // namespace

int RunRemoteNodeMain(const std::vector<std::string>& argv) {
  absl::StatusOr<RemoteNodeArgs> args = RemoteNodeArgs::Parse(argv);
  if (!args.ok()) {  // the message starts "remote-node: "; the vCPU count and ids are checked there too
    std::fprintf(stderr, "coalesce %s\n", std::string(args.status().message()).c_str());
    return exit_status::kUsage;
  }
  absl::StatusOr<dsm::DataPlaneSecret> secret = ReadDataPlaneKey(args->data_plane_key_fd);
  if (!secret.ok()) {
    std::fprintf(stderr, "coalesce remote-node: %s\n", std::string(secret.status().message()).c_str());
    return exit_status::kUsage;
  }
  int ready_fd = args->ready_fd;
  // SIGTERM from the agent (StopVm) ends the node in order: vCPUs stopped, peers told, exit. The stopper exists
  // before the node is built and outlives it, so a stop is honoured in every phase and never hangs (grace
  // period, then a forced exit: hypervisor/base/signal_stopper.h).
  BlockStopSignals();
  std::atomic<RemoteNode*> running{nullptr};
  std::atomic<bool> ran{false};  // the node ran and is being torn down: a stop signal now has nothing to stop
  SignalStopper stopper(
      [&running, &ran](int sig, int value) {
        if (sig == SIGUSR2) return;  // a status request, meaningful for `run` only
        RemoteNode* node = running.load();
        // The home stopped the node already (the guest powered off) and the agent's stop came after: the
        // teardown under way is the stop, within the grace period from here.
        if (node == nullptr && ran.load()) return;
        if (node == nullptr) {
          std::fprintf(stderr, "coalesce remote-node: stopped by signal %d before the node ran\n", sig);
          std::fflush(stderr);
          ::_exit(exit_status::kHostFailure);
        }
        // The agent's SIGTERM says why (edge_monitor/runtime_stop_reason.h); the home's report repeats it.
        node->RequestStop(DescribeRuntimeStop(sig, value));
      },
      // A memory node's grace grows with what it may hold: it hands every page back before it goes (2 ms a page
      // covers the nested VM's TCG, where a page's round trip is about 1 ms). The agent's --departure-grace
      // still bounds it from outside.
      {.grace_ms = 20'000 + static_cast<int>(args->lent_memory_bytes / 4096 * 2),
       .forced_exit_status = exit_status::kHostFailure, .who = "coalesce remote-node"});
  auto node = std::make_unique<RemoteNode>(*args, *secret);
  if (absl::Status st = node->Build(); !st.ok()) {
    std::fprintf(stderr, "coalesce remote-node: %s\n", std::string(st.message()).c_str());
    return exit_status::kHostFailure;
  }
  // The userfaultfd exists: the device that made it is not needed again.
  if (args->userfaultfd_device_fd >= 0) ::close(args->userfaultfd_device_fd);
  // Everything the node needs is open: from here it runs confined (runtime_sandbox.h) before any guest code.
  absl::StatusOr<HostIdentity> confined =
      ConfineRuntime({.drop_to_nobody = true, .private_memory = {node->guest_ram()}});
  if (!confined.ok()) {
    std::fprintf(stderr, "coalesce remote-node: confinement: %s\n", std::string(confined.status().message()).c_str());
    return exit_status::kHostFailure;
  }
  const std::string who =
      confined->own_user_namespace
          ? absl::StrFormat("uid %u of its own user namespace, %u on the host", confined->uid, confined->host_uid)
          : absl::StrFormat("uid %u", confined->uid);
  LOG_INFO("remote node confined: %s, no capabilities, seccomp filter of %u system calls", who,
           RuntimeAllowedSyscalls().size() + 3);  // + clone (threads), clone3 (ENOSYS), socket (IP, UNIX)
  char ready = 1;
  if (::write(ready_fd, &ready, 1) != 1) {
    std::fprintf(stderr, "coalesce remote-node: cannot signal readiness on fd %d\n", ready_fd);
    return exit_status::kHostFailure;
  }
  ::close(ready_fd);
  running.store(node.get());
  const int status = node->Run();
  ran.store(true);
  running.store(nullptr);
  node.reset();  // teardown joins threads: still under the stopper's deadline
  return status;
}

}  // namespace coalesce
