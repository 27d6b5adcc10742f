// Everything needed to build one guest machine on this node.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "devmodel/vhost_user/disk_spec.h"
#include "dsm/link_emulation.h"
#include "devmodel/virtio/virtio_net_tap.h"
#include "edge_monitor/guest_ranges.h"
#include "edge_monitor/tls.h"
#include "hypervisor/boot/numa_topology.h"
#include "hypervisor/machine/edge_placement.h"
#include "hypervisor/vcpu/cpuid.h"
#include "hypervisor/vcpu/halt_poll.h"

namespace coalesce {

struct MachineConfig {
  // The VM's name; its control socket is ControlSocketPath(name) (`coalesce ctl`). Empty: no control socket.
  std::string name;
  std::string kernel_path;
  std::string initrd_path;
  std::string cmdline;
  uint32_t vcpus = 1;  // present at boot
  // The most vCPUs the guest may have (ACPI CPU hotplug, docs/HOTPLUG.md): ids vcpus..max_vcpus-1 exist from
  // the start (idle) but the guest sees them only once plugged. 0: vcpus.
  uint32_t max_vcpus = 0;
  // Every vCPU id: 0..vcpu_ids()-1.
  [[nodiscard]] uint32_t vcpu_ids() const { return max_vcpus > vcpus ? max_vcpus : vcpus; }
  uint64_t memory = 256ULL << 20;  // present at boot
  // The most RAM the guest may have (ACPI memory hotplug, docs/HOTPLUG.md): max_memory - memory more, in
  // 128 MiB slots above the boot RAM, mapped from the start but shown to the guest only once plugged
  // (`coalesce ctl setmemory`, or a memory edge attached). 0: memory.
  uint64_t max_memory = 0;
  [[nodiscard]] uint64_t hotplug_memory() const { return max_memory > memory ? max_memory - memory : 0; }
  CpuModel cpu_model = CpuModel::kBaseline;  // what CPUID shows on every node (see hypervisor/vcpu/cpuid.h)
  bool sample_rip = false;  // profile guest RIPs (see Machine::RipSamples)
  // The longest a halted vCPU at home spins for an interrupt before it sleeps (hypervisor/vcpu/halt_poll.h).
  absl::Duration halt_poll_max = HaltPollWindow::kDefaultMax;
  // Where the guest's COM1 output goes (default: stdout). Input comes from stdin when `console_input`.
  std::function<void(uint8_t)> console_output;
  bool console_input = true;
  // Virtio block devices (virtio-mmio + vhost-user to qemu-storage-daemon), at most platform::kMaxVirtioMmio.
  std::vector<DiskSpec> disks;
  // Virtio network devices on TAP interfaces (after the disks on the virtio-mmio window; disks + nets <= 8).
  std::vector<NetSpec> nets;
  // Coalescence: vCPUs placed on edge agents (empty: every vCPU at home). vCPU 0 always runs at home.
  std::vector<EdgePlacementSpec> edges;
  std::string data_plane_host = "127.0.0.1";  // the address edge nodes use to reach this node's data plane
  uint16_t data_plane_port = 0;
  std::string data_plane_advertise;  // host:port edges dial instead (NAT, port forward); empty: host:port above
  // Guest-physical ranges whose pages never leave home: no edge maps them, home serves their accesses.
  std::vector<GuestRange> home_only_memory;
  // At most this much guest RAM stays at home; the oldest pages beyond it live on the memory edges (edges with
  // memory_bytes and no vCPUs). 0: no allowance.
  uint64_t home_memory_allowance = 0;
  // Guest NUMA (ACPI SRAT and SLIT; docs/NUMA.md). kAuto: one domain per node when vCPUs run on edges, with
  // distances from the measured round trips; kExplicit: `numa_nodes`, on one host.
  NumaMode numa = NumaMode::kAuto;
  std::vector<NumaNode> numa_nodes;
  // The user's bound on the round trip to any edge (profile policies.latency_bound_us): home measures each link
  // before the guest starts and refuses the placement if one is slower. Infinite: no bound.
  absl::Duration latency_bound = absl::InfiniteDuration();
  double max_edge_load = 0;  // policies.max_edge_load: each agent refuses above this load per CPU (0: none)
  uint32_t lease_seconds = 0;  // policies.lease_seconds: the lease asked of each agent (0: its longest)
  // Emulated latency, jitter and bandwidth on every data-plane link of the VM, both ways (--link; off by default).
  dsm::LinkEmulation link;
  ControlPlaneSecurity control_plane;  // how the home talks to edge agents (mutual TLS or loopback plaintext)
};

}  // namespace coalesce
