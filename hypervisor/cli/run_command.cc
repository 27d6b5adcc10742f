#include "hypervisor/cli/run_command.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#include "dsm/link_spec.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/cli/numa_option.h"
#include "hypervisor/cli/run_options.h"
#include "hypervisor/base/signal_stopper.h"
#include "edge_monitor/discovery.h"
#include "edge_monitor/dns_sd.h"
#include "edge_monitor/edge_flag.h"
#include "edge_monitor/guest_ranges.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/profile_loader.h"
#include "edge_monitor/profile_overrides.h"
#include "edge_monitor/profile_validator.h"
#include "edge_monitor/size.h"
#include "edge_monitor/tls.h"
#include "hypervisor/base/control_socket.h"
#include "hypervisor/machine/machine.h"
#include "hypervisor/memory/guest_memory.h"
#include "hypervisor/vcpu/exit_status.h"

namespace coalesce {
namespace {

// How long `--discover dns-sd` listens for announcements: mDNS answers a query within about a second.
constexpr absl::Duration kDnsSdBrowseWindow = absl::Seconds(3);

absl::Status WriteRipSamples(const std::string& path, const std::map<uint64_t, uint64_t>& samples) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return absl::NotFoundError(absl::StrFormat("%s: %s", path, std::strerror(errno)));
  for (const auto& [rip, n] : samples) std::fprintf(f, "%016lx %lu\n", rip, n);
  if (std::fclose(f) != 0) return absl::DataLossError(absl::StrFormat("%s: %s", path, std::strerror(errno)));
  return absl::OkStatus();
}

// The profile (if any) with the command-line flags layered over it, checked, as a MachineConfig.
absl::StatusOr<MachineConfig> MergeProfile(RunOptions options) {
  pb::Profile profile;
  if (!options.profile.empty()) {
    absl::StatusOr<pb::Profile> loaded = LoadProfile(options.profile);
    if (!loaded.ok()) return loaded.status();
    profile = *std::move(loaded);
  }
  ProfileOverrides ov;
  if (!options.kernel.empty()) ov.kernel = options.kernel;
  if (!options.initrd.empty()) ov.initrd = options.initrd;
  if (!options.append.empty()) ov.cmdline = options.append;
  if (options.memory_set) ov.memory = FormatSize(options.memory);
  if (options.vcpus_set || options.profile.empty()) ov.vcpus = options.vcpus;
  if (options.max_vcpus != 0) ov.max_vcpus = options.max_vcpus;
  if (!options.max_memory.empty()) ov.max_memory = options.max_memory;
  for (const std::string& e : options.edges) {
    absl::StatusOr<EdgePlacement> placement = ParseEdgeFlag(e);
    if (!placement.ok()) return placement.status();
    ov.edges.push_back(*std::move(placement));
  }
  // The merged values, checked with the flags' own messages first.
  RunOptions merged = options;
  merged.kernel = ov.kernel.value_or(profile.guest().kernel());
  merged.vcpus = ov.vcpus.value_or(profile.guest().vcpus());
  merged.max_vcpus = ov.max_vcpus.value_or(profile.guest().max_vcpus());
  if (!ov.memory && !profile.guest().memory().empty()) {
    absl::StatusOr<uint64_t> m = ParseSize(profile.guest().memory(), "memory");
    if (!m.ok()) return m.status();
    merged.memory = *m;
  }
  if (absl::Status st = ValidateRunOptions(merged); !st.ok()) return st;
  if (absl::Status st = ApplyOverrides(ov, &profile); !st.ok()) return st;
  if (!options.home_memory.empty()) profile.mutable_home()->set_memory(options.home_memory);
  for (const std::string& e : options.memory_edges) {
    const size_t eq = e.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--memory-edge '", e, "': expected ADDR=SIZE, e.g. 127.0.0.1:7001=256M"));
    }
    pb::EdgeNode* edge = profile.add_edge();
    edge->set_address(e.substr(0, eq));
    edge->set_memory(e.substr(eq + 1));
  }
  if (profile.guest().memory().empty()) profile.mutable_guest()->set_memory(FormatSize(merged.memory));
  if (absl::Status st = ValidateProfile(profile); !st.ok()) {
    return absl::InvalidArgumentError(
        options.profile.empty() ? std::string(st.message()) : absl::StrFormat("%s: %s", options.profile, st.message()));
  }
  MachineConfig config;
  config.kernel_path = profile.guest().kernel();
  config.initrd_path = profile.guest().initrd();
  config.cmdline = profile.guest().cmdline();
  config.vcpus = profile.guest().vcpus();
  config.max_vcpus = profile.guest().max_vcpus();
  config.memory = merged.memory;
  if (!profile.guest().max_memory().empty()) config.max_memory = *ParseSize(profile.guest().max_memory());  // validated
  config.sample_rip = !options.rip_samples.empty();
  config.halt_poll_max = absl::Microseconds(options.halt_poll_us);
  absl::StatusOr<CpuModel> model =
      options.cpu_model.empty() ? ResolveCpuModel(profile.guest().cpu_model(), "guest.cpu_model")
                                : ResolveCpuModel(options.cpu_model, "--cpu");
  if (!model.ok()) return model.status();
  config.cpu_model = *model;
  for (const auto& edge : profile.edge()) {
    EdgePlacementSpec spec{edge.address(), {edge.vcpus().begin(), edge.vcpus().end()}};
    if (!edge.memory().empty()) spec.memory_bytes = *ParseSize(edge.memory(), "edge.memory");  // validated
    config.edges.push_back(std::move(spec));
  }
  if (!profile.home().memory().empty()) {
    config.home_memory_allowance = *ParseSize(profile.home().memory(), "home.memory");  // validated
  }
  const auto& disks = options.disks.empty() ? std::vector<std::string>(profile.guest().disks().begin(),
                                                                        profile.guest().disks().end())
                                            : options.disks;
  for (const std::string& d : disks) {
    absl::StatusOr<DiskSpec> disk = ParseDiskSpec(d);
    if (!disk.ok()) return disk.status();
    config.disks.push_back(*std::move(disk));
  }
  const auto& nets = options.nets.empty() ? std::vector<std::string>(profile.guest().nets().begin(),
                                                                      profile.guest().nets().end())
                                          : options.nets;
  for (const std::string& n : nets) {
    absl::StatusOr<NetSpec> net = ParseNetSpec(n);
    if (!net.ok()) return net.status();
    config.nets.push_back(*std::move(net));
  }
  std::string data_plane = !options.data_plane.empty() ? options.data_plane : profile.home().data_plane_address();
  if (!data_plane.empty()) {
    absl::StatusOr<HostPort> hp = ParseHostPort(data_plane, "--data-plane", /*allow_port_zero=*/true);
    if (!hp.ok()) return hp.status();
    config.data_plane_host = hp->host;
    config.data_plane_port = hp->port;
  }
  const std::string& home_only =
      !options.home_only_memory.empty() ? options.home_only_memory : profile.home().home_only_memory();
  if (!home_only.empty()) {
    absl::StatusOr<std::vector<GuestRange>> ranges = ParseGuestRanges(home_only, "--home-only-memory");
    if (!ranges.ok()) return ranges.status();
    const std::vector<MemoryRegion> ram = GuestMemory::Layout(config.memory);
    for (const GuestRange& r : *ranges) {
      if (!GuestMemory::FileOffset(ram, r.start, r.size).ok()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "--home-only-memory: [%#x, %#x) is not inside the guest's RAM (%s)", r.start, r.end(),
            FormatSize(config.memory)));
      }
    }
    config.home_only_memory = *std::move(ranges);
  }
  const std::string& link = !options.link.empty() ? options.link : profile.home().link();
  if (!link.empty()) {
    absl::StatusOr<dsm::LinkEmulation> l = dsm::ParseLinkSpec(link, "--link");
    if (!l.ok()) return l.status();
    config.link = *l;
  }
  const std::string& numa = !options.numa.empty() ? options.numa : profile.guest().numa();
  absl::StatusOr<NumaChoice> numa_choice =
      ParseNumaSpec(numa, !options.numa.empty() ? "--numa" : "guest.numa", config.vcpu_ids(), config.memory);
  if (!numa_choice.ok()) return numa_choice.status();
  if (numa_choice->mode == NumaMode::kExplicit && !config.edges.empty()) {
    return absl::InvalidArgumentError(
        "--numa: explicit domains are for one host; a coalesced VM's domains follow its placement (auto or off)");
  }
  if (profile.policies().has_latency_bound_us()) {
    config.latency_bound = absl::Microseconds(profile.policies().latency_bound_us());
  }
  if (profile.policies().has_max_edge_load()) config.max_edge_load = profile.policies().max_edge_load();
  if (profile.policies().has_lease_seconds()) config.lease_seconds = profile.policies().lease_seconds();
  config.name = !options.name.empty() ? options.name
                : !profile.name().empty() ? profile.name() : absl::StrFormat("coalesce-%d", ::getpid());
  if (absl::Status st = ValidateVmName(config.name); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(options.name.empty() ? "name" : "--name", ": ", st.message()));
  }
  config.numa = numa_choice->mode;
  config.numa_nodes = std::move(numa_choice->nodes);
  const std::string& advertise = !options.data_plane_advertise.empty() ? options.data_plane_advertise
                                                                       : profile.home().data_plane_advertise();
  if (!advertise.empty()) {
    absl::StatusOr<HostPort> hp = ParseHostPort(advertise, "--data-plane-advertise");
    if (!hp.ok()) return hp.status();
    if (config.data_plane_port == 0) {
      return absl::InvalidArgumentError(
          "--data-plane-advertise needs a fixed --data-plane port (what the advertised address forwards to)");
    }
    config.data_plane_advertise = advertise;
  }
  // Security: mutual TLS to the edge agents from the flags or the profile; plaintext leaves loopback only with
  // --insecure. The data plane is always sealed with a per-run key that home sends inside HostVcpus, so it is as
  // private as the control plane: off loopback it needs mutual TLS there, or --insecure.
  const pb::HomeNode& home = profile.home();
  TlsFiles tls = options.tls;
  if (tls.ca.empty() && tls.cert.empty() && tls.key.empty()) {
    tls.ca = home.tls_ca();
    tls.cert = home.tls_cert();
    tls.key = home.tls_key();
  }
  if (tls.crl.empty()) tls.crl = home.tls_crl();
  absl::StatusOr<std::optional<TlsMaterial>> material = LoadTls(tls);
  if (!material.ok()) return material.status();
  if (material->has_value()) config.control_plane.tls = std::make_shared<const TlsMaterial>(**material);
  config.control_plane.insecure = options.insecure || home.insecure();
  // An agent address (placed with --edge or a candidate of --discover): well formed, and reached in plaintext
  // only over loopback unless --insecure.
  auto check_agent_address = [&config](const std::string& address, const char* what) -> absl::Status {
    absl::StatusOr<HostPort> hp = ParseHostPort(address, what);
    if (!hp.ok()) return hp.status();
    return CheckPlaintextAllowed(*hp, config.control_plane.tls != nullptr, config.control_plane.insecure,
                                 "edge agent");
  };
  if (!options.discover.empty()) {
    if (config.numa == NumaMode::kExplicit) {
      return absl::InvalidArgumentError("--numa: explicit domains are for one host, and --discover places vCPUs on edges");
    }
    if (!config.edges.empty()) {
      return absl::InvalidArgumentError("--discover places the vCPUs itself: give --edge (or profile edges) or "
                                        "--discover, not both");
    }
    const uint32_t home_vcpus = options.home_vcpus == 0 ? 1 : options.home_vcpus;
    if (home_vcpus >= config.vcpus) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--discover: --home-vcpus %u leaves none of the %u vCPUs to place on an edge", home_vcpus, config.vcpus));
    }
    std::vector<std::string> candidates;
    for (absl::string_view a : absl::StrSplit(options.discover, ',', absl::SkipEmpty())) {
      if (a == "dns-sd") {
        // Every agent announced on the local network (`coalesce edge --announce`) is a candidate.
        absl::StatusOr<std::vector<DnsSdService>> announced = BrowseDnsSd(kDnsSdBrowseWindow);
        if (!announced.ok()) return announced.status();
        std::vector<std::string> found;
        for (const DnsSdService& s : *announced) found.push_back(absl::StrCat(s.instance, " at ", s.agent_address()));
        std::fprintf(stderr, "coalesce run: DNS-SD: %zu edge agent(s) announced on the local network%s%s\n",
                     found.size(), found.empty() ? "" : ": ", absl::StrJoin(found, ", ").c_str());
        for (const DnsSdService& s : *announced) {
          if (std::find(candidates.begin(), candidates.end(), s.agent_address()) == candidates.end()) {
            candidates.push_back(s.agent_address());
            RETURN_IF_ERROR(check_agent_address(candidates.back(), "--discover dns-sd"));
          }
        }
        continue;
      }
      candidates.emplace_back(a);
      RETURN_IF_ERROR(check_agent_address(candidates.back(), "--discover"));
    }
    if (candidates.empty()) {
      return absl::FailedPreconditionError("--discover: no candidate edge agents (none announced by DNS-SD)");
    }
    DiscoveryPolicy policy;
    policy.latency_bound = config.latency_bound;
    policy.max_edge_load = config.max_edge_load;
    policy.max_edge_vcpus = profile.policies().max_edge_vcpus();
    policy.guest_memory = config.memory;
    std::vector<uint32_t> lend;
    for (uint32_t v = home_vcpus; v < config.vcpus; ++v) lend.push_back(v);
    EdgeAgentClientOptions client;
    client.security = config.control_plane;
    const std::vector<EdgeCandidate> found = QueryCandidates(candidates, client, absl::Seconds(3));
    absl::StatusOr<std::vector<DiscoveredEdge>> plan = PlanPlacement(found, lend, policy);
    if (!plan.ok()) return plan.status();
    std::fprintf(stderr, "coalesce run: discovered:\n%s\n", DescribeCandidates(found, *plan, policy).c_str());
    for (DiscoveredEdge& e : *plan) {
      if (!e.vcpus.empty()) config.edges.push_back({e.address, std::move(e.vcpus)});
    }
  }
  if (!config.edges.empty() && config.control_plane.tls == nullptr && !config.control_plane.insecure &&
      !IsLoopbackHost(config.data_plane_host)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "--data-plane %s is not a loopback address, and without mutual TLS on the control plane the data plane's "
        "key would travel in clear: give --tls-ca, --tls-cert and --tls-key, or --insecure (docs/SECURITY.md)",
        config.data_plane_host));
  }
  for (const EdgePlacementSpec& edge : config.edges) {
    RETURN_IF_ERROR(check_agent_address(edge.agent_address, "edge agent address"));
  }
  if (config.control_plane.insecure && config.control_plane.tls == nullptr && !config.edges.empty()) {
    std::fprintf(stderr,
                 "coalesce run: --insecure: the control plane is plaintext, and with it the data plane's key\n");
  }
  return config;
}

}  // namespace

int RunCommand(const std::vector<std::string>& args) {
  absl::StatusOr<RunOptions> parsed = ParseRunOptions(args);
  if (!parsed.ok()) {
    std::fprintf(stderr, "coalesce run: %s\n", std::string(parsed.status().message()).c_str());
    return exit_status::kUsage;
  }
  RunOptions options = *std::move(parsed);
  if (options.help) {
    std::fputs(kRunUsage, stdout);
    return 0;
  }
  if (!options.log_level.empty()) {
    LogLevel level;
    if (!ParseLogLevel(options.log_level, &level)) {
      std::fprintf(stderr, "coalesce run: --log-level: '%s' is not one of debug, info, warning, error\n",
                   options.log_level.c_str());
      return exit_status::kUsage;
    }
    SetLogLevel(level);
  }
  absl::StatusOr<MachineConfig> config = MergeProfile(options);
  if (!config.ok()) {
    std::fprintf(stderr, "coalesce run: %s\n", std::string(config.status().message()).c_str());
    return exit_status::kUsage;
  }
  // A name in use is refused before anything is built (Machine::StartControl checks again, closing the race).
  if (CallControl(ControlSocketPath(config->name), "ping", absl::Seconds(1)).ok()) {
    std::fprintf(stderr, "coalesce run: a VM named '%s' is already running (--name; %s)\n", config->name.c_str(),
                 ControlSocketPath(config->name).c_str());
    return exit_status::kUsage;
  }
  // Before any thread exists, so every thread inherits the mask and only the stopper sees them.
  BlockStopSignals();
  // The stopper outlives the machine (declared first, destroyed last), so a stop signal is honoured in every
  // phase: while the machine is built (edges contacted: there is nothing to stop in order yet, so the process
  // ends at once), while it runs, and while it is torn down; and the process ends within the grace period
  // whatever the VM is blocked on.
  std::atomic<Machine*> running{nullptr};
  SignalStopper stopper(
      [&running](int sig, int /*value*/) {
        Machine* vm = running.load();
        if (sig == SIGPWR) {  // the daemon's `virsh shutdown`: ask the guest to power off
          if (vm != nullptr) vm->PressPowerButton();
          return;
        }
        if (sig == SIGUSR2) {  // where is the guest? counters now, each vCPU's registers at its next exit
          if (vm != nullptr) {
            std::fputs(vm->StatsReport().c_str(), stderr);
            vm->RequestRegisterDumps();
          }
          return;
        }
        if (vm == nullptr) {
          std::fprintf(stderr, "coalesce: stopped by signal %d (%s) while the machine was being built\n", sig,
                       strsignal(sig));
          std::fflush(stderr);
          ::_exit(exit_status::kHostFailure);
        }
        vm->RequestStop(exit_status::kHostFailure, absl::StrFormat("stopped by signal %d (%s)", sig, strsignal(sig)));
      },
      {.grace_ms = 10'000, .forced_exit_status = exit_status::kHostFailure, .who = "coalesce"});
  absl::StatusOr<std::unique_ptr<Machine>> machine = Machine::Create(*config);
  if (!machine.ok()) {
    std::fprintf(stderr, "coalesce run: %s\n", std::string(machine.status().message()).c_str());
    // Input problems (files, sizes, formats, a kernel or initrd too big for --memory, a VM name in use) are usage errors;
    // anything else is the host's.
    absl::StatusCode c = machine.status().code();
    bool input = c == absl::StatusCode::kInvalidArgument || c == absl::StatusCode::kNotFound ||
                 c == absl::StatusCode::kOutOfRange || c == absl::StatusCode::kFailedPrecondition ||
                 c == absl::StatusCode::kResourceExhausted || c == absl::StatusCode::kAlreadyExists;
    return input ? exit_status::kUsage : exit_status::kHostFailure;
  }
  Machine& vm = **machine;
  running.store(&vm);
  const int status = vm.Run();
  std::fflush(stdout);
  std::fprintf(stderr, "coalesce: %s (exit status %d)\n", (*machine)->run_control().reason().c_str(), status);
  if (options.print_stats) std::fputs(vm.StatsReport().c_str(), stderr);
  if (!options.rip_samples.empty()) {
    if (absl::Status st = WriteRipSamples(options.rip_samples, vm.RipSamples()); !st.ok()) {
      std::fprintf(stderr, "coalesce run: --rip-samples: %s\n", std::string(st.message()).c_str());
    }
  }
  running.store(nullptr);
  machine->reset();  // teardown joins threads: still under the stopper's deadline
  return status;
}

}  // namespace coalesce
