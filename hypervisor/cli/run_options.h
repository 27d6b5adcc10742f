// `coalesce run` flags, parsed into a value the machine builder consumes. Pure: unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "edge_monitor/tls.h"
#include "hypervisor/vcpu/halt_poll.h"

#include "absl/status/statusor.h"

namespace coalesce {

inline constexpr uint32_t kMaxVcpus = 255;  // xAPIC: 8-bit ids, 0xff is the broadcast id
inline constexpr uint64_t kDefaultMemory = 256ULL << 20;

struct RunOptions {
  std::string kernel;
  std::string initrd;
  std::string append;
  uint32_t vcpus = 1;
  uint64_t memory = kDefaultMemory;
  bool memory_set = false;
  bool vcpus_set = false;
  std::string max_memory;  // --max-memory SIZE: RAM the guest may grow to by ACPI memory hotplug (empty: memory)
  uint32_t max_vcpus = 0;              // --max-vcpus N: CPUs the guest may gain by ACPI hotplug (0: vcpus)
  std::string profile;                 // --profile FILE (coalescence profile)
  std::vector<std::string> edges;      // --edge ADDR=LIST, as given (parsed by the profile code)
  std::vector<std::string> disks;      // --disk FILE[,format=..][,readonly=..], as given (ParseDiskSpec)
  std::vector<std::string> nets;       // --net tap=NAME[,mac=..], as given (ParseNetSpec)
  std::string data_plane;              // --data-plane HOST:PORT (this node's DSM/data-plane address)
  std::string data_plane_advertise;    // --data-plane-advertise HOST:PORT (what edges dial, behind NAT/relay)
  std::string home_only_memory;        // --home-only-memory START+SIZE,... (pages that never leave home)
  std::string home_memory;             // --home-memory SIZE (the home's allowance; the rest on memory edges)
  std::vector<std::string> memory_edges;  // --memory-edge ADDR=SIZE, as given (parsed with the profile)
  std::string link;                    // --link CLASS[,KEY=VALUE...] (emulated data-plane links)
  std::string discover;                // --discover ADDR,... (candidate edge agents; vCPUs placed on them)
  uint32_t home_vcpus = 0;             // --home-vcpus N: with --discover, vCPUs 0..N-1 stay home (0: 1)
  std::string name;                    // --name NAME (the VM's name for `coalesce ctl`)
  std::string numa;                    // --numa auto|off|cpus=..[,memory=..]/... (ParseNumaSpec)
  TlsFiles tls;                        // --tls-ca, --tls-cert, --tls-key: mutual TLS with edge agents
  bool insecure = false;               // --insecure: plaintext to non-loopback addresses
  bool print_stats = false;            // --stats: exit and emulation counters at exit
  // --halt-poll-us N: a halted vCPU's spin before it sleeps (0: none); default KVM's, as HaltPollWindow's
  uint32_t halt_poll_us = static_cast<uint32_t>(absl::ToInt64Microseconds(HaltPollWindow::kDefaultMax));
  std::string rip_samples;             // --rip-samples FILE: guest RIP histogram written at exit
  std::string log_level;               // --log-level
  std::string cpu_model;               // --cpu host|baseline|auto (empty: the profile's, else auto)
  bool help = false;
};

// Parses the arguments after "run". Errors name the flag and the bad value.
absl::StatusOr<RunOptions> ParseRunOptions(const std::vector<std::string>& args);
// Checks what only makes sense once everything is merged (kernel given, vcpus in range, ...).
absl::Status ValidateRunOptions(const RunOptions& options);

extern const char kRunUsage[];
extern const char kTopUsage[];

}  // namespace coalesce
