// Builds and runs one guest on the home node: KVM VM, guest RAM, interrupt controllers, devices, firmware
// tables, the kernel, and one Vcpu per vCPU. Init phases run in order (core, irq, devices, boot, vcpus);
// teardown is the reverse (vCPU threads, then timers, then devices, then memory and the VM).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "devmodel/virtio/dma_guard.h"
#include "devmodel/virtio/virtio_mmio.h"
#include "hypervisor/base/control_socket.h"
#include "hypervisor/base/temp_dir.h"
#include "hypervisor/base/timer_service.h"
#include "hypervisor/boot/acpi_tables.h"
#include "hypervisor/boot/boot_entry.h"
#include "hypervisor/bus/bus.h"
#include "hypervisor/kvm/coalesced_mmio_ring.h"
#include "hypervisor/kvm/kvm_system.h"
#include "hypervisor/machine/home_vcpu_mover.h"
#include "hypervisor/machine/machine_config.h"
#include "hypervisor/machine/vm_pause.h"
#include "hypervisor/memory/guest_memory.h"
#include "hypervisor/vcpu/bus_io_handler.h"
#include "hypervisor/vcpu/node_vcpus.h"
#include "hypervisor/vcpu/run_control.h"
#include "hypervisor/vcpu/vcpu.h"

namespace coalesce {

class LocalApic;
class IoApic;
class Pic8259Pair;
class LocalInterruptRouter;
class ForwardingInterruptRouter;
class CoalescenceHome;
class LegacyIrqWiring;
class FwCfg;
class Uart16550;
class ConsoleInput;
class AcpiPm;
class HotplugController;

class Machine final {
 public:
  static absl::StatusOr<std::unique_ptr<Machine>> Create(const MachineConfig& config);
  ~Machine();

  // Starts every vCPU, waits until the guest stops, and returns the exit status (see exit_status.h).
  int Run();
  [[nodiscard]] const RunControl& run_control() const { return run_control_; }
  // Stops the guest from outside (a signal, a lost node); the first stop wins.
  void RequestStop(int exit_status, std::string reason) { run_control_.Stop(exit_status, std::move(reason)); }
  // Presses the ACPI power button: a guest with ACPI shuts down cleanly (SIGPWR, `virsh shutdown`).
  void PressPowerButton();
  // Exit, injection and emulation counters of every vCPU, one line each.
  [[nodiscard]] std::string StatsReport() const;
  // Guest RIP -> samples over every local vCPU (empty unless config.sample_rip).
  [[nodiscard]] std::map<uint64_t, uint64_t> RipSamples() const;

 private:
  explicit Machine(const MachineConfig& config);
  absl::Status BuildCore();
  absl::Status BuildInterruptControllers();
  absl::Status BuildDevices();
  absl::Status BuildDisks();
  absl::Status BuildNetworks();
  // Places a virtio device on the next virtio-mmio slot (MMIO window, GSI, DSDT entry, ioeventfds).
  absl::Status AddVirtioDevice(std::unique_ptr<virtio::VirtioDevice> device);
  absl::Status LoadGuest();
  // The guest's NUMA domains into acpi_config_ (docs/NUMA.md); distances estimated until measured.
  void PlanNumaTopology();
  // Measures the round trip to each edge: refuses a link over the user's latency bound (FailedPrecondition
  // naming the edge), sets the guest's NUMA distances from them and rewrites the ACPI tables.
  absl::Status MeasureLinks();
  // Listens on the VM's control socket (config_.name) for `coalesce ctl`.
  absl::Status StartControl();
  std::string ControlCommand(std::string_view command);
  std::string StatusReport();
  absl::Status BuildVcpus();
  // What every vCPU of this node is built from (node_vcpus: the home's and the edges' one way).
  NodeVcpusSpec VcpusSpec();
  // Replays the guest's coalesced writes (posted_writes_) through the MMIO bus: after each exit, before a
  // virtio interrupt is raised.
  void ReplayPostedWrites();
  // For halt-polling vCPUs: raises the completions a virtio device's back end published and its worker has not
  // yet raised; true if any (VirtioMmio::PollUsed).
  bool PollDeviceCompletions();
  absl::Status StartCoalescence();
  // Placed here at start (vCPUs may move later: forwarding_router_->NodeOf is where they are now).
  [[nodiscard]] bool IsLocal(uint32_t vcpu) const { return node_of_vcpu_[vcpu] == 0; }
  // Edge node `node` leaves (its agent stops): its vCPUs move home and its pages follow as it leaves the DSM;
  // the guest runs on; CPUs that edge lent through `attach` are then given back (GiveBackLentCpus). A step that
  // fails stops the VM with the reason. On a thread of its own, or the control thread (`detach`). Returns what
  // happened, as printed.
  std::string Depart(uint16_t node, const std::string& reason);
  void JoinDepartures();
  // `coalesce ctl ... move VCPU NODE`.
  std::string MoveCommand(const std::vector<std::string>& words);
  // "home", a node number or an edge agent's address (the node it serves now) -> node id.
  std::optional<uint16_t> NodeByName(const std::string& name) const;
  // `coalesce ctl ... attach ADDR vcpus=LIST`: a new edge leased while the guest runs; the vCPUs move there.
  std::string AttachCommand(const std::vector<std::string>& words);
  // `coalesce ctl ... attach ADDR memory=SIZE` (machine_memory.cc): a memory edge leased while the guest runs.
  std::string AttachMemoryEdge(const std::string& address, const std::string& size_text);
  // `coalesce ctl ... home-memory SIZE|off` (machine_memory.cc): how much guest RAM stays at home from now on;
  // refused unless the memory edges can hold the rest.
  std::string HomeMemoryCommand(const std::vector<std::string>& words);
  // The status line of the home's memory allowance ("" without one).
  std::string HomeMemoryStatus() const;
  // `coalesce ctl ... detach ADDR|NODE`: the edge's vCPUs move home and it leaves (as on its agent's SIGTERM).
  std::string DetachCommand(const std::vector<std::string>& words);
  // `coalesce ctl ... setvcpus N` (machine_hotplug.cc): plugs absent vCPUs (lowest ids first) or asks the
  // guest to give up present ones (highest first) until N are present; waits for the guest's answer.
  std::string SetVcpusCommand(const std::vector<std::string>& words);
  // Plugs `vcpus` (absent ones; present ones are left alone), each in proximity domain `domain` (its _PXM), else
  // the one the boot SRAT gave it, and waits until the guest took each event. Returns what was plugged, or an
  // error naming the vCPU.
  absl::StatusOr<std::vector<uint32_t>> PlugVcpus(const std::vector<uint32_t>& vcpus,
                                                  std::optional<uint8_t> domain = std::nullopt);
  uint8_t BootDomainOf(uint32_t vcpu) const;  // the guest NUMA domain the boot SRAT gives `vcpu`; 0 without one
  // Asks the guest to give up `vcpus` (present ones; others are left alone) and waits until it ejected each.
  absl::StatusOr<std::vector<uint32_t>> UnplugVcpus(const std::vector<uint32_t>& vcpus);
  // Of `vcpus` (an edge's, just moved home as it left), those `attach` plugged in are the CPUs that edge lent:
  // the guest gives them back (ACPI eject). Returns a note for the departure's report ("" when none).
  std::string GiveBackLentCpus(const std::vector<uint32_t>& vcpus);
  // Milliseconds since `start`, for the hotplug and attach replies.
  static double MsSince(std::chrono::steady_clock::time_point start);
  // `vcpus` are no longer CPUs an edge lent (unplugged, or home for good).
  void ForgetLent(const std::vector<uint32_t>& vcpus);
  // `coalesce ctl ... setmemory SIZE` (machine_memory_hotplug.cc): plugs absent memory slots (lowest first) or
  // asks the guest to give up plugged ones (highest first) until the guest has SIZE of RAM; waits for its answer.
  std::string SetMemoryCommand(const std::vector<std::string>& words);
  // Plugs up to `count` absent memory slots (lowest first), each in proximity domain `domain` (its _PXM), and
  // waits until the guest took each event. Returns them.
  absl::StatusOr<std::vector<uint32_t>> PlugMemorySlots(uint32_t count, uint8_t domain = 0);
  // Asks the guest to give up `slots` and waits until it ejected each; on one node, their host memory is freed.
  absl::Status UnplugMemorySlots(const std::vector<uint32_t>& slots);
  // The guest's RAM now: boot RAM and plugged slots.
  [[nodiscard]] uint64_t PresentMemory() const;
  // The memory slots node `node` lent through `attach` go back (the guest ejects them) as it leaves. Returns a
  // note for the departure's report ("" when none).
  std::string GiveBackLentMemory(uint16_t node);
  // After `attach ADDR memory=SIZE` leased node `node`: a guest that may grow gains that RAM in whole absent slots,
  // lent by the node (given back when it leaves). Returns a note for the attach's reply ("" without --max-memory).
  std::string GrowWithLentMemory(uint16_t node, uint64_t bytes);
  // The status line of memory hotplug ("" without --max-memory).
  std::string MemoryHotplugStatus() const;
  // `coalesce ctl ... suspend` / `resume` (machine_pause.cc): every vCPU on every node held at its pause gate,
  // or released.
  std::string SuspendCommand(const std::vector<std::string>& words);
  std::string ResumeCommand(const std::vector<std::string>& words);
  // Refusal of a command that needs the guest running ("" when it runs).
  std::string RefuseWhilePaused(const char* verb) const;
  // The edge nodes in the VM now (none that left).
  std::vector<uint16_t> LiveEdges() const;
  // `coalesce ctl ... link NODE SPEC`: the emulated link from the home to an edge, changed while the guest runs.
  std::string LinkCommand(const std::vector<std::string>& words);
  // With a latency bound (policies.latency_bound_us): probes every edge's round trip each second while the guest
  // runs; an edge over the bound 3 rounds in a row is sent home (Depart). On a thread of its own.
  void MonitorLinks();
  void Shutdown();
  void SampleRips();

 public:
  // Each running vCPU prints its registers to stderr at its next exit (SIGUSR2 status report).
  void RequestRegisterDumps();

 private:

  MachineConfig config_;
  RunControl run_control_;
  std::unique_ptr<KvmSystem> kvm_;
  std::unique_ptr<VmFd> vm_;
  std::unique_ptr<GuestMemory> memory_;
  Bus pio_bus_{"pio"};
  Bus mmio_bus_{"mmio"};
  std::unique_ptr<BusIoHandler> io_handler_;
  // Declared before the controllers and devices that schedule on it: they cancel their timers when
  // destroyed (Cancel waits for a running callback), so the service must outlive them.
  std::unique_ptr<TimerService> timers_;
  std::vector<uint16_t> node_of_vcpu_;                // 0 = here; edge k (config order) = node k+1
  std::unique_ptr<LocalInterruptRouter> router_;
  ForwardingInterruptRouter* forwarding_router_ = nullptr;  // router_ itself when coalesced
  std::unique_ptr<IoApic> ioapic_;
  std::unique_ptr<Pic8259Pair> pic_;
  std::unique_ptr<LegacyIrqWiring> irq_sink_;
  std::vector<std::unique_ptr<LocalApic>> lapics_;    // indexed by vCPU id; registered where the vCPU runs here
  TempDir disk_dir_;  // the storage daemons' sockets and logs; outlives devices_
  std::unique_ptr<virtio::DmaGuard> dma_guard_;  // coalesced guests' disks: pins in the home's DSM
  std::vector<std::unique_ptr<BusDevice>> devices_;  // the ordered device table, built in BuildDevices()
  std::vector<virtio::VirtioMmio*> virtio_devices_;   // owned by devices_: disks, then networks
  std::vector<AcpiVirtioMmioDevice> acpi_virtio_mmio_;  // their DSDT entries
  AcpiConfig acpi_config_;                            // what LoadGuest wrote (rewritten once links are measured)
  Uart16550* uart_ = nullptr;                         // owned by devices_
  FwCfg* fw_cfg_ = nullptr;                           // owned by devices_
  AcpiPm* acpi_pm_ = nullptr;                         // owned by devices_
  HotplugController* cpu_hotplug_ = nullptr;          // owned by devices_; null without --max-vcpus
  HotplugController* memory_hotplug_ = nullptr;       // owned by devices_; null without --max-memory
  BootEntry boot_entry_;
  std::unique_ptr<ConsoleInput> console_input_;
  std::atomic<bool> console_flush_pending_{false};  // a flush of a partial console line is scheduled
  std::vector<std::unique_ptr<Vcpu>> vcpus_;           // indexed by vCPU id; idle where the vCPU runs elsewhere
  // KVM's coalesced MMIO ring (the virtio-mmio InterruptACK registers), in vcpus_[0]'s mapping: after vcpus_.
  std::unique_ptr<CoalescedMmioRing> posted_writes_;
  std::vector<absl::Duration> link_rtt_;              // measured at start: entry i = node i (0: home)
  // Per edge, the boot RAM its guest NUMA domain names (a memory edge's share; none for a vCPU edge): what the SRAT
  // says and what home's DSM spills to that edge first, computed once for both (PlanNumaTopology).
  std::vector<MemoryShare> boot_memory_shares_;
  std::unique_ptr<ControlServer> control_;            // the VM's control socket (stopped first in Shutdown)
  std::unique_ptr<HomeVcpuMover> mover_;              // moves vCPUs (coalesced VMs); before home_, which calls it
  std::unique_ptr<CoalescenceHome> home_;             // only when vCPUs run on edge nodes
  std::unique_ptr<VmPause> pause_;                    // suspend/resume on every node; after home_, which it calls
  std::atomic<bool> running_{false};                  // vCPUs started: moves may begin
  absl::Mutex depart_mu_;  // Depart() runs one at a time
  // Held by a departure while it gives lent CPUs back (the guest must run to eject them) and tried by
  // `suspend`, which is refused meanwhile rather than leave the departure waiting for a paused guest.
  absl::Mutex give_back_mu_;
  absl::Mutex lent_mu_;    // a leaf
  std::vector<uint32_t> lent_vcpus_ ABSL_GUARDED_BY(lent_mu_);  // plugged in by `attach`: given back on departure
  // Memory slots plugged in by `attach ADDR memory=SIZE`, by the node that lent them: given back on its departure.
  std::map<uint16_t, std::vector<uint32_t>> lent_memory_slots_ ABSL_GUARDED_BY(lent_mu_);
  // Guest NUMA domains kept for edges attached after boot (NumaNode::spare, docs/NUMA.md), each with the node
  // whose plugged-in CPUs and memory slots joined it (kNoEdge while free).
  static constexpr uint16_t kNoEdge = 0xffff;
  struct SpareDomain {
    uint8_t domain;
    uint16_t edge = kNoEdge;
  };
  std::vector<SpareDomain> spare_domains_ ABSL_GUARDED_BY(lent_mu_);
  // The spare domain `node`'s CPUs and slots join: the one it has, else a free one (taken); 0 (home's) when the
  // guest has none free.
  uint8_t SpareDomainFor(uint16_t node);
  void ReleaseSpareDomain(uint16_t node);  // `node` left: its domain is free for the next edge
  // " (guest NUMA node D, distance N: ...)" for what an attach plugged into domain D; "" without guest NUMA.
  std::string DomainNote(uint8_t domain) const;
  absl::Mutex departures_mu_;
  std::vector<std::thread> departures_ ABSL_GUARDED_BY(departures_mu_);  // Depart(), joined in Shutdown
};

}  // namespace coalesce
