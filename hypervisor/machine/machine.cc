#include "hypervisor/machine/machine.h"

#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "devmodel/acpi_pm.h"
#include "devmodel/cmos_rtc.h"
#include "devmodel/debug_exit.h"
#include "devmodel/fw_cfg.h"
#include "devmodel/home_only_memory.h"
#include "devmodel/hotplug_controller.h"
#include "devmodel/pit8254.h"
#include "devmodel/reset_control.h"
#include "devmodel/system_control_port_b.h"
#include "devmodel/uart16550.h"
#include "devmodel/vhost_user/storage_daemon.h"
#include "devmodel/vhost_user/vhost_user_blk.h"
#include "dsm/link_spec.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/size.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/base/thread_name.h"
#include "hypervisor/boot/acpi_tables.h"
#include "hypervisor/boot/cpu_startup.h"
#include "hypervisor/boot/e820_map.h"
#include "hypervisor/boot/kernel_image.h"
#include "hypervisor/boot/linux_loader.h"
#include "hypervisor/boot/multiboot_loader.h"
#include "hypervisor/irq/io_apic.h"
#include "hypervisor/irq/legacy_irq_wiring.h"
#include "hypervisor/irq/local_apic.h"
#include "hypervisor/irq/local_interrupt_router.h"
#include "hypervisor/irq/pic.h"
#include "hypervisor/kvm/page_walk_mode.h"
#include "hypervisor/machine/coalescence_home.h"
#include "hypervisor/machine/console_input.h"
#include "hypervisor/machine/dsm_dma_guard.h"
#include "hypervisor/vcpu/cpuid.h"
#include "hypervisor/vcpu/exit_status.h"
#include "hypervisor/vcpu/model_msrs.h"
#include "hypervisor/vcpu/node_vcpus.h"
#include "vcpu_remote/forwarding_router.h"

namespace coalesce {
namespace {

absl::Status PrefixError(const std::string& path, const absl::Status& st) {
  return absl::Status(st.code(), absl::StrFormat("%s: %s", path, st.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Machine>> Machine::Create(const MachineConfig& config) {
  std::unique_ptr<Machine> m(new Machine(config));
  RETURN_IF_ERROR(m->BuildCore());
  RETURN_IF_ERROR(m->BuildInterruptControllers());
  RETURN_IF_ERROR(m->BuildDevices());
  RETURN_IF_ERROR(m->LoadGuest());
  RETURN_IF_ERROR(m->BuildVcpus());
  RETURN_IF_ERROR(m->StartCoalescence());
  RETURN_IF_ERROR(m->StartControl());
  return m;
}

Machine::Machine(const MachineConfig& config) : config_(config) {}

Machine::~Machine() { Shutdown(); }

absl::Status Machine::BuildCore() {
  ASSIGN_OR_RETURN(KvmSystem kvm, KvmSystem::Open());
  kvm_ = std::make_unique<KvmSystem>(std::move(kvm));
  int max_vcpus = kvm_->CheckExtension(KVM_CAP_MAX_VCPUS);
  if (max_vcpus > 0 && config_.vcpu_ids() > static_cast<uint32_t>(max_vcpus)) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %u is more than this host's KVM allows (%d)",
                                                      config_.max_vcpus > config_.vcpus ? "--max-vcpus" : "--vcpus",
                                                      config_.vcpu_ids(), max_vcpus));
  }
  ASSIGN_OR_RETURN(VmFd vm, kvm_->CreateVm());
  vm_ = std::make_unique<VmFd>(std::move(vm));
  // Intel VMX needs these two pages below 4 GiB for real-mode emulation; other KVMs ignore or refuse them.
  if (absl::Status st = vm_->SetTssAddr(0xfffb'd000); !st.ok()) LOG_DEBUG("%s", st.ToString());
  if (absl::Status st = vm_->SetIdentityMapAddr(0xfffb'c000); !st.ok()) LOG_DEBUG("%s", st.ToString());
  ASSIGN_OR_RETURN(GuestMemory mem, GuestMemory::Create(config_.memory, config_.hotplug_memory()));
  memory_ = std::make_unique<GuestMemory>(std::move(mem));
  RETURN_IF_ERROR(memory_->RegisterWith(*vm_));
  io_handler_ = std::make_unique<BusIoHandler>(&pio_bus_, &mmio_bus_);
  timers_ = std::make_unique<TimerService>();
  return absl::OkStatus();
}

absl::Status Machine::BuildInterruptControllers() {
  node_of_vcpu_.assign(config_.vcpu_ids(), 0);
  for (size_t e = 0; e < config_.edges.size(); ++e) {
    for (uint32_t v : config_.edges[e].vcpus) {
      if (v >= config_.vcpu_ids()) {
        return absl::InvalidArgumentError(absl::StrFormat("edge %s: vCPU %u does not exist (ids 0-%u)",
                                                          config_.edges[e].agent_address, v, config_.vcpu_ids() - 1));
      }
      if (v == 0) return absl::InvalidArgumentError("vCPU 0 (the bootstrap processor) must run at home");
      node_of_vcpu_[v] = static_cast<uint16_t>(e + 1);
    }
  }
  if (config_.edges.empty()) {
    router_ = std::make_unique<LocalInterruptRouter>();
  } else {
    auto fwd = std::make_unique<ForwardingInterruptRouter>(
        0, node_of_vcpu_,
        [this](uint16_t node, const ApicMessage& msg) {
          if (home_) home_->SendInterrupt(node, msg);
        },
        nullptr);
    forwarding_router_ = fwd.get();
    router_ = std::move(fwd);
  }
  ioapic_ = std::make_unique<IoApic>(router_.get());
  router_->SetIoApic(ioapic_.get());
  pic_ = std::make_unique<Pic8259Pair>();
  irq_sink_ = std::make_unique<LegacyIrqWiring>(pic_.get(), ioapic_.get());
  // Every vCPU has its APIC here (hypervisor/vcpu/node_vcpus), registered where the vCPU runs here (the others
  // take over when a vCPU moves home: home_vcpu_mover). The kick reaches the Vcpu built in BuildVcpus().
  vcpus_.resize(config_.vcpu_ids());
  CreateNodeApics(VcpusSpec(), router_.get(), timers_.get(), [this](uint32_t id) {
    if (vcpus_[id]) vcpus_[id]->Kick();
  }, &lapics_);
  for (uint32_t i = 0; i < config_.vcpu_ids(); ++i) {
    if (IsLocal(i)) RETURN_IF_ERROR(router_->AddApic(lapics_[i].get()));
  }
  // The PIC's INTR pin is wired to LINT0 of the bootstrap processor.
  pic_->SetOutputCallback([this](bool level) { lapics_[0]->SetLint0(level); });
  RETURN_IF_ERROR(mmio_bus_.Register(platform::kIoapicBase, platform::kIoapicSize, ioapic_.get()));
  RETURN_IF_ERROR(pio_bus_.Register(platform::kPicMasterPort, 2, &pic_->master_ports()));
  RETURN_IF_ERROR(pio_bus_.Register(platform::kPicSlavePort, 2, &pic_->slave_ports()));
  RETURN_IF_ERROR(pio_bus_.Register(platform::kPicElcrPort, 2, &pic_->elcr_ports()));
  return absl::OkStatus();
}

absl::Status Machine::BuildDevices() {
  auto console_out = config_.console_output;
  if (!console_out) {
    console_out = [this](uint8_t c) {
      std::fputc(c, stdout);
      if (c == '\n') {
        std::fflush(stdout);
        return;
      }
      // A shell prompt ends without a newline: flush shortly after the guest stops writing rather than at its
      // next line, so an interactive console (a terminal, or `virsh console` through a file) shows it.
      if (!console_flush_pending_.exchange(true)) {
        timers_->Schedule(TimerService::Clock::now() + std::chrono::milliseconds(10), [this] {
          console_flush_pending_.store(false);
          std::fflush(stdout);
        });
      }
    };
  }
  auto uart = std::make_unique<Uart16550>(irq_sink_.get(), platform::kCom1Irq, console_out);
  uart_ = uart.get();
  auto debug_exit = std::make_unique<DebugExit>([this](uint32_t status) {
    run_control_.Stop(static_cast<int>(status),
                      absl::StrFormat("guest wrote %u to the debug-exit port", status >> 1));
  });
  auto fw_cfg = std::make_unique<FwCfg>();
  fw_cfg->SetCpuCount(static_cast<uint16_t>(config_.vcpus), static_cast<uint16_t>(config_.vcpu_ids()));
  fw_cfg->SetRamSize(config_.memory);
  fw_cfg_ = fw_cfg.get();
  auto pit = std::make_unique<Pit8254>(irq_sink_.get(), platform::kPitIrq, timers_.get());
  auto port_b = std::make_unique<SystemControlPortB>(pit.get());
  auto rtc = std::make_unique<CmosRtc>(irq_sink_.get(), platform::kRtcIrq, timers_.get());
  uint64_t below_4g = 0, above_4g = 0;
  for (const auto& r : memory_->boot_ram()) (r.guest_phys < kPciHoleEnd ? below_4g : above_4g) += r.size;
  rtc->SetMemorySize(below_4g, above_4g);
  auto acpi_pm = std::make_unique<AcpiPm>(irq_sink_.get(), platform::kAcpiSciIrq, timers_.get(), [this] {
    run_control_.Stop(exit_status::kPowerOff, "guest powered off (ACPI S5)");
  });
  acpi_pm_ = acpi_pm.get();
  auto reset = std::make_unique<ResetControl>(
      [this] { run_control_.Stop(exit_status::kGuestReset, "guest reset through port 0xcf9"); });

  // The ordered device table: (bus, base, size, device). Registration rejects overlaps.
  struct Slot {
    Bus* bus;
    uint64_t base;
    uint64_t size;
    std::unique_ptr<BusDevice> device;
  };
  Slot table[] = {
      {&pio_bus_, platform::kCom1Port, 8, std::move(uart)},
      {&pio_bus_, platform::kDebugExitPort, 1, std::move(debug_exit)},
      {&pio_bus_, platform::kFwCfgPort, 2, std::move(fw_cfg)},
      {&pio_bus_, platform::kPitPort, 4, std::move(pit)},
      {&pio_bus_, platform::kSystemControlPortB, 1, std::move(port_b)},
      {&pio_bus_, platform::kRtcPort, 2, std::move(rtc)},
      {&pio_bus_, platform::kAcpiPm1aEventPort, AcpiPm::kSize, std::move(acpi_pm)},
      {&pio_bus_, platform::kResetControlPort, 1, std::move(reset)},
  };
  // CPU hotplug only where the guest may gain CPUs: a machine without it has the tables it always had.
  if (config_.vcpu_ids() > config_.vcpus) {
    auto cpu_hotplug = std::make_unique<HotplugController>(kCpuHotplugKind, irq_sink_.get(), platform::kHotplugIrq,
                                                           config_.vcpu_ids(), config_.vcpus);
    cpu_hotplug_ = cpu_hotplug.get();
    RETURN_IF_ERROR(pio_bus_.Register(platform::kCpuHotplugPort, platform::kHotplugSize, cpu_hotplug.get()));
    devices_.push_back(std::move(cpu_hotplug));
  }
  // Memory hotplug likewise, only with --max-memory: its slots are all absent at boot.
  if (config_.hotplug_memory() > 0) {
    auto memory_hotplug = std::make_unique<HotplugController>(
        kMemoryHotplugKind, irq_sink_.get(), platform::kHotplugIrq,
        static_cast<uint32_t>(config_.hotplug_memory() / platform::kMemoryHotplugSlotSize), 0);
    memory_hotplug_ = memory_hotplug.get();
    RETURN_IF_ERROR(pio_bus_.Register(platform::kMemoryHotplugPort, platform::kHotplugSize, memory_hotplug.get()));
    devices_.push_back(std::move(memory_hotplug));
  }
  for (Slot& s : table) {
    RETURN_IF_ERROR(s.bus->Register(s.base, s.size, s.device.get()));
    devices_.push_back(std::move(s.device));
  }
  // Home-only RAM, for the accesses edge vCPUs forward (their nodes map no memory there).
  for (const GuestRange& r : config_.home_only_memory) {
    auto window = std::make_unique<HomeOnlyMemory>(memory_.get(), r.start);
    RETURN_IF_ERROR(mmio_bus_.Register(r.start, r.size, window.get()));
    devices_.push_back(std::move(window));
  }
  RETURN_IF_ERROR(BuildDisks());
  return BuildNetworks();
}

absl::Status Machine::BuildDisks() {
  if (config_.disks.empty()) return absl::OkStatus();
  if (config_.disks.size() > platform::kMaxVirtioMmio) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%u disks: at most %u", config_.disks.size(), platform::kMaxVirtioMmio));
  }
  if (!config_.edges.empty()) {
    // The storage daemon reads and writes guest RAM behind the DSM's back: shadow rings, and each request's pages
    // pinned at home while the daemon has it (docs/DISKS.md).
    dma_guard_ = std::make_unique<DsmDmaGuard>(memory_.get(), [this]() -> dsm::DsmNode* {
      return home_ != nullptr ? &home_->dsm() : nullptr;
    });
  } else {
    dma_guard_ = std::make_unique<virtio::LocalDmaGuard>();  // for disks that ask for shadow rings
  }
  ASSIGN_OR_RETURN(disk_dir_, TempDir::Create("coalesce-disks-"));
  for (size_t i = 0; i < config_.disks.size(); ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<StorageDaemon> daemon,
                     StorageDaemon::Start(config_.disks[i], disk_dir_.path(), static_cast<int>(i)));
    ASSIGN_OR_RETURN(std::unique_ptr<VhostUserBlk> blk,
                     VhostUserBlk::Create(std::move(daemon), memory_.get(),
                                          {.name = absl::StrFormat("vd%c", 'a' + i),
                                           .shadow_guard = config_.edges.empty() && !config_.disks[i].shadow
                                                               ? nullptr
                                                               : dma_guard_.get()}));
    RETURN_IF_ERROR(AddVirtioDevice(std::move(blk)));
  }
  return absl::OkStatus();
}

absl::Status Machine::BuildNetworks() {
  if (config_.disks.size() + config_.nets.size() > platform::kMaxVirtioMmio) {
    return absl::InvalidArgumentError(absl::StrFormat("%u disks and %u networks: at most %u virtio devices",
                                                      config_.disks.size(), config_.nets.size(),
                                                      platform::kMaxVirtioMmio));
  }
  for (size_t j = 0; j < config_.nets.size(); ++j) {
    // QEMU's locally administered prefix; the last byte numbers the device.
    const std::array<uint8_t, 6> mac = {0x52, 0x54, 0x00, 0x12, 0x34, static_cast<uint8_t>(0x56 + j)};
    ASSIGN_OR_RETURN(std::unique_ptr<VirtioNetTap> net,
                     VirtioNetTap::Create(config_.nets[j], mac, memory_.get(), absl::StrFormat("net%u", j)));
    RETURN_IF_ERROR(AddVirtioDevice(std::move(net)));
  }
  return absl::OkStatus();
}

absl::Status Machine::AddVirtioDevice(std::unique_ptr<virtio::VirtioDevice> device) {
  const size_t i = virtio_devices_.size();
  const uint64_t base = platform::kVirtioMmioBase + i * platform::kVirtioMmioStride;
  const uint32_t gsi = platform::kVirtioMmioFirstGsi + static_cast<uint32_t>(i);
  auto dev = std::make_unique<virtio::VirtioMmio>(std::move(device), irq_sink_.get(), gsi);
  RETURN_IF_ERROR(mmio_bus_.Register(base, virtio::VirtioMmio::kSize, dev.get()));
  // Local vCPUs' queue notifies signal the device's eventfd inside KVM, without an exit; a remote vCPU's
  // notify arrives forwarded and goes through VirtioMmio::Write like an exit would.
  for (uint16_t q = 0; q < dev->device().num_queues(); ++q) {
    const int fd = dev->device().notify_eventfd(q);
    if (fd < 0) continue;
    if (absl::Status st = vm_->AddMmioEventFd(base + virtio::VirtioMmio::kQueueNotifyOffset, 4, q, fd); !st.ok()) {
      LOG_INFO("%s: queue %u notifies exit to user space: %s", dev->name(), q, st.ToString());
    }
  }
  // The InterruptACK does not exit: the write waits in KVM's coalesced MMIO ring until the next exit of any vCPU
  // or the next interrupt of any virtio device replays it (ReplayPostedWrites), which is all the order an
  // acknowledgement needs (VirtioMmio::SetPostedWriteFlush). BuildVcpus finds the ring.
  if (vm_->CoalescedMmioPage() > 0) {
    if (absl::Status st = vm_->CoalesceMmioWrites(base + virtio::VirtioMmio::kInterruptAckOffset, 4); st.ok()) {
      dev->SetPostedWriteFlush([this] { ReplayPostedWrites(); });
    } else {
      LOG_INFO("%s: interrupt acknowledgements exit to user space: %s", dev->name(), st.ToString());
    }
  }
  // Reads of the registers (the interrupt handler's InterruptStatus) come from the device's mirror, mapped
  // read-only over the window: no exit. Writes still exit, or signal a notify eventfd: KVM turns a write to a
  // read-only memslot into MMIO. A remote vCPU has no such slot; its reads arrive forwarded, as before.
  static_assert(platform::kVirtioMmioStride == virtio::RegisterMirror::kSize);
  if (vm_->CheckExtension(KVM_CAP_READONLY_MEM) != 0) {
    if (absl::Status st = vm_->SetUserMemoryRegion(platform::kVirtioMirrorFirstMemslot + static_cast<uint32_t>(i),
                                                   base, virtio::RegisterMirror::kSize, dev->mirror().page(),
                                                   KVM_MEM_READONLY);
        !st.ok()) {
      LOG_INFO("%s: register reads exit to user space: %s", dev->name(), st.ToString());
    }
  }
  virtio_devices_.push_back(dev.get());
  acpi_virtio_mmio_.push_back({base, static_cast<uint32_t>(virtio::VirtioMmio::kSize), gsi});
  devices_.push_back(std::move(dev));
  return absl::OkStatus();
}

absl::Status Machine::LoadGuest() {
  ASSIGN_OR_RETURN(std::vector<uint8_t> kernel, ReadFileBytes(config_.kernel_path));
  std::vector<uint8_t> initrd;
  if (!config_.initrd_path.empty()) {
    ASSIGN_OR_RETURN(initrd, ReadFileBytes(config_.initrd_path));
  }
  E820Map e820 = E820Map::ForRegions(memory_->boot_ram());
  RETURN_IF_ERROR(fw_cfg_->AddFile("etc/e820", e820.ToBytes()).status());
  acpi_config_ = AcpiConfig{.vcpu_count = config_.vcpus,
                            .possible_vcpus = config_.vcpu_ids(),
                            .virtio_mmio = acpi_virtio_mmio_,
                            .ram = memory_->boot_ram()};
  if (memory_hotplug_ != nullptr) {
    acpi_config_.memory_hotplug = {.base = GuestMemory::HotplugBase(config_.memory),
                                   .slot_size = platform::kMemoryHotplugSlotSize,
                                   .slots = memory_hotplug_->possible()};
  }
  PlanNumaTopology();
  ASSIGN_OR_RETURN(uint64_t rsdp, BuildAcpiTables(*memory_, acpi_config_));

  switch (DetectKernelFormat(kernel)) {
    case KernelFormat::kLinuxBzImage: {
      LinuxBootOptions opts{.cmdline = config_.cmdline, .initrd = initrd, .e820 = e820.Entries(),
                            .acpi_rsdp_addr = rsdp};
      absl::StatusOr<LinuxLoadResult> r = LoadLinux(*memory_, kernel, opts);
      if (!r.ok()) {
        // Name the file the problem is about: the initrd's placement errors start with "initrd".
        const bool about_initrd = absl::StartsWith(r.status().message(), "initrd");
        return PrefixError(about_initrd ? config_.initrd_path : config_.kernel_path, r.status());
      }
      boot_entry_ = r->entry;
      return absl::OkStatus();
    }
    case KernelFormat::kMultiboot: {
      MultibootOptions opts{.cmdline = config_.cmdline, .modules = {}, .e820 = e820.Entries()};
      if (!initrd.empty()) opts.modules.push_back({initrd, config_.initrd_path});
      absl::StatusOr<MultibootLoadResult> r = LoadMultiboot(*memory_, kernel, opts);
      if (!r.ok()) return PrefixError(config_.kernel_path, r.status());
      boot_entry_ = r->entry;
      return absl::OkStatus();
    }
    case KernelFormat::kUnknown:
      break;
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s: not a kernel Coalesce can boot (neither a Linux bzImage nor a Multiboot v1 image)",
      config_.kernel_path));
}

NodeVcpusSpec Machine::VcpusSpec() {
  NodeVcpusSpec spec;
  spec.vcpu_count = config_.vcpu_ids();
  spec.model = config_.cpu_model;
  // Known once LoadGuest planned the guest NUMA topology; the APICs, built before that, do not read it.
  spec.private_caches = !config_.edges.empty() || acpi_config_.numa.enabled();
  spec.wiring.io = io_handler_.get();
  spec.wiring.run_control = &run_control_;
  spec.wiring.memory = memory_.get();
  spec.wiring.sample_rip = config_.sample_rip;
  spec.wiring.halt_poll_max = config_.halt_poll_max;
  if (!virtio_devices_.empty()) spec.wiring.poll_completions = [this] { return PollDeviceCompletions(); };
  spec.wiring.replay_posted_writes = [this] { ReplayPostedWrites(); };
  spec.bsp_ext_int_ack = [this] {
    uint8_t vector = pic_->Acknowledge();
    lapics_[0]->AcknowledgeExtInt();
    return vector;
  };
  return spec;
}

absl::Status Machine::BuildVcpus() {
  // Every vCPU id exists here (KVM creates a vCPU once per VM); those placed on edges stay idle until one
  // moves home.
  RETURN_IF_ERROR(CreateNodeVcpus(VcpusSpec(), *kvm_, *vm_, lapics_, &vcpus_));
  if (const int page = vm_->CoalescedMmioPage(); page > 0 && !virtio_devices_.empty()) {
    void* ring = vcpus_[0]->fd().MappedPage(page);
    if (ring == nullptr) return absl::InternalError("KVM's coalesced MMIO ring is not in the vCPU's mapping");
    posted_writes_ = std::make_unique<CoalescedMmioRing>(ring);
  }
  RETURN_IF_ERROR(ApplyBootEntry(boot_entry_, vcpus_[0]->fd()));
  pause_ = std::make_unique<VmPause>(vcpus_, run_control_, timers_.get(), [this] { return LiveEdges(); },
                                     [this](uint16_t node, const node_msg::NodeMessage& message) {
                                       return home_->Send(node, message);
                                     });
  run_control_.AddStopHook([this] {
    pause_->Cancel();
    if (cpu_hotplug_ != nullptr) cpu_hotplug_->CancelWaits();
    if (memory_hotplug_ != nullptr) memory_hotplug_->CancelWaits();
    if (mover_) mover_->Cancel();
    if (home_) home_->NotifyStop(run_control_.exit_status(), run_control_.reason());
    for (auto& v : vcpus_) {
      if (v) v->Kick();
    }
  });
  return absl::OkStatus();
}

void Machine::PlanNumaTopology() {
  boot_memory_shares_ = BootMemoryShares(config_.edges, config_.memory, config_.home_memory_allowance);
  NumaTopology t;
  if (config_.numa == NumaMode::kExplicit) {
    t.nodes = config_.numa_nodes;
  } else if (config_.numa == NumaMode::kAuto && !config_.edges.empty()) {
    // A memory edge's domain is its share of boot RAM, the range home's DSM spills to it first.
    const std::vector<MemoryShare>& shares = boot_memory_shares_;
    std::vector<NumaNode> edges;
    for (size_t e = 0; e < config_.edges.size(); ++e) {
      const EdgePlacementSpec& edge = config_.edges[e];
      if (edge.vcpus.empty() && shares[e].length < kMinNumaNodeMemory) {
        LOG_INFO(
            "guest NUMA off: memory edge %s would name %u KiB of boot RAM beyond home's allowance (%u MiB), "
            "under the 4 MiB a guest NUMA node needs",
            edge.agent_address, shares[e].length >> 10, config_.home_memory_allowance >> 20);
        return;
      }
      edges.push_back(NumaNode{edge.vcpus, shares[e].length});
    }
    t = TopologyFromPlacement(config_.vcpu_ids(), config_.memory, edges);
  }
  if (!t.enabled()) return;
  // Before (or without) a measurement: the emulated link's round trip where --link sets one, else Linux's default.
  const absl::Duration one_way = config_.link.one_way_latency;
  SetUniformDistances(t, one_way > absl::ZeroDuration() ? SlitDistanceForRoundTrip(2 * one_way)
                                                         : kSlitDefaultRemoteDistance);
  // A coalesced VM that may gain CPUs or RAM keeps domains for edges attached later: what such an edge lends
  // joins a domain of its own (the tables cannot gain one once the guest has read them).
  const bool may_grow = memory_hotplug_ != nullptr || config_.vcpu_ids() > config_.vcpus;
  if (config_.numa == NumaMode::kAuto && may_grow) {
    AddSpareDomains(t, t.distance(0, 1));
    absl::MutexLock lock(&lent_mu_);
    for (size_t d = 0; d < t.nodes.size(); ++d) {
      if (t.nodes[d].spare) spare_domains_.push_back({.domain = static_cast<uint8_t>(d)});
    }
  }

  // Checked where the tables are built (BuildAcpiTableSet); --numa's own layouts were checked when parsed.
  acpi_config_.numa = std::move(t);
}

uint8_t Machine::SpareDomainFor(uint16_t node) {
  absl::MutexLock lock(&lent_mu_);
  for (const SpareDomain& s : spare_domains_) {
    if (s.edge == node) return s.domain;
  }
  for (SpareDomain& s : spare_domains_) {
    if (s.edge == kNoEdge) {
      s.edge = node;
      return s.domain;
    }
  }
  return 0;
}

std::string Machine::DomainNote(uint8_t domain) const {
  const NumaTopology& t = acpi_config_.numa;
  if (!t.enabled()) return "";
  if (domain == 0) return " (guest NUMA node 0, home's: no domain kept for a later edge is free)";
  return absl::StrFormat(" (guest NUMA node %u, distance %u: the farthest edge's at boot)", domain,
                         t.distance(0, domain));
}

void Machine::ReleaseSpareDomain(uint16_t node) {
  absl::MutexLock lock(&lent_mu_);
  for (SpareDomain& s : spare_domains_) {
    if (s.edge == node) s.edge = kNoEdge;
  }
}

absl::Status Machine::MeasureLinks() {
  constexpr int kProbes = 7;
  ASSIGN_OR_RETURN(std::vector<absl::Duration> rtt, home_->MeasureRoundTrips(kProbes));
  link_rtt_ = rtt;
  for (size_t e = 0; e < config_.edges.size(); ++e) {
    if (rtt[e + 1] > config_.latency_bound) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "edge %s refused: its round trip, %.3f ms, is over the profile's latency bound (policies.latency_bound_us "
          "%d); a link too slow for the policy is not used",
          config_.edges[e].agent_address, absl::ToDoubleMilliseconds(rtt[e + 1]),
          absl::ToInt64Microseconds(config_.latency_bound)));
    }
  }
  const bool numa = acpi_config_.numa.enabled();
  if (numa) {
    SetDistancesFromHomeRoundTrips(acpi_config_.numa, rtt);
    // The same tables with new SLIT bytes: same sizes, same addresses; no vCPU has run, so no node holds a copy.
    RETURN_IF_ERROR(BuildAcpiTables(*memory_, acpi_config_).status());
  }
  for (size_t e = 0; e < config_.edges.size(); ++e) {
    const double ms = absl::ToDoubleMilliseconds(rtt[e + 1]);
    if (numa) {
      const NumaNode& node = acpi_config_.numa.nodes[e + 1];
      const std::string holds = node.vcpus.empty() ? absl::StrFormat("memory %s", FormatSize(node.memory))
                                                   : absl::StrFormat("vCPUs %s", FormatVcpuList(node.vcpus));
      std::fprintf(stderr, "coalesce run: guest NUMA node %zu = edge %s (%s): round trip %.3f ms, distance %u\n", e + 1,
                   config_.edges[e].agent_address.c_str(), holds.c_str(), ms, acpi_config_.numa.distance(0, e + 1));
    } else {
      LOG_INFO("edge %s: round trip %.3f ms", config_.edges[e].agent_address, ms);
    }
  }
  if (!config_.edges.empty()) {
    for (const std::string& remark : CoalescedPagingRemarks()) std::fprintf(stderr, "coalesce run: %s\n", remark.c_str());
  }
  std::vector<uint32_t> spare;
  for (size_t d = 0; d < acpi_config_.numa.nodes.size(); ++d) {
    if (acpi_config_.numa.nodes[d].spare) spare.push_back(static_cast<uint32_t>(d));
  }
  if (numa && !spare.empty()) {
    std::fprintf(stderr,
                 "coalesce run: guest NUMA nodes %s kept for edges attached later (their CPUs and memory slots): "
                 "distance %u, the farthest edge's\n",
                 FormatVcpuList(spare).c_str(), acpi_config_.numa.distance(0, spare.front()));
  }
  return absl::OkStatus();
}

absl::Status Machine::StartControl() {
  if (config_.name.empty()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<ControlServer>> server = ControlServer::Start(
      ControlSocketPath(config_.name), [this](std::string_view c) { return ControlCommand(c); });
  if (server.status().code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(absl::StrFormat("a VM named '%s' is already running (--name; %s)", config_.name,
                                                    ControlSocketPath(config_.name)));
  }
  if (!server.ok()) return server.status();
  control_ = *std::move(server);
  LOG_INFO("control socket %s (coalesce ctl --vm %s)", control_->path(), config_.name);
  return absl::OkStatus();
}

// On the control thread: reads only what is fixed after Create or is thread-safe (the DSM, the power button).
std::string Machine::ControlCommand(std::string_view command) {
  if (command == "ping") return "pong";
  if (command == "status") return StatusReport();
  if (command == "shutdown") {
    if (acpi_pm_ == nullptr) return "error: this machine has no ACPI power button";
    PressPowerButton();
    return absl::StrFormat("vm %s: ACPI power button pressed", config_.name);
  }
  // The commands with arguments: a verb and its words.
  std::vector<std::string> args =
      absl::StrSplit(absl::string_view(command.data(), command.size()), ' ', absl::SkipEmpty());
  const std::string verb = args.empty() ? "" : args.front();
  if (!args.empty()) args.erase(args.begin());
  if (verb == "move") return MoveCommand(args);
  if (verb == "link") return LinkCommand(args);
  if (verb == "attach") return AttachCommand(args);
  if (verb == "detach") return DetachCommand(args);
  if (verb == "setvcpus") return SetVcpusCommand(args);
  if (verb == "suspend") return SuspendCommand(args);
  if (verb == "resume") return ResumeCommand(args);
  if (verb == "home-memory") return HomeMemoryCommand(args);
  if (verb == "setmemory") return SetMemoryCommand(args);
  return absl::StrFormat(
      "error: unknown command '%s' (status, shutdown, move, link, attach, detach, setvcpus, setmemory, suspend, "
      "resume, home-memory)",
      std::string(command));
}

void Machine::MonitorLinks() {
  constexpr absl::Duration kInterval = absl::Seconds(1);
  constexpr int kStrikes = 3;  // rounds in a row over the bound: one slow probe is no degradation
  std::vector<int> strikes;
  std::vector<std::chrono::steady_clock::time_point> first_over;
  std::vector<bool> sent_home;
  while (!run_control_.WaitForStop(kInterval)) {
    const size_t nodes = home_->edge_count() + 1;  // edges attached meanwhile are watched too
    strikes.resize(nodes, 0);
    first_over.resize(nodes);
    sent_home.resize(nodes, false);
    absl::StatusOr<std::vector<absl::Duration>> rtt = home_->MeasureRoundTrips(3);
    if (!rtt.ok()) {
      LOG_WARN("link monitor: %s", rtt.status().ToString());
      continue;
    }
    for (uint16_t node = 1; node < nodes && node < rtt->size(); ++node) {
      if (sent_home[node] || home_->Released(node)) continue;
      if ((*rtt)[node] <= config_.latency_bound) {
        strikes[node] = 0;
        continue;
      }
      if (strikes[node]++ == 0) first_over[node] = std::chrono::steady_clock::now();
      LOG_INFO("link monitor: node %u round trip %s over the bound %s (%d of %d)", node,
               absl::FormatDuration((*rtt)[node]), absl::FormatDuration(config_.latency_bound), strikes[node],
               kStrikes);
      if (strikes[node] < kStrikes) continue;
      sent_home[node] = true;
      const double detect_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - first_over[node]).count();
      std::string reason = absl::StrFormat(
          "link degraded: round trip %.3f ms over policies.latency_bound_us %d %d times in a row, over %.0f ms",
          absl::ToDoubleMilliseconds((*rtt)[node]), absl::ToInt64Microseconds(config_.latency_bound), kStrikes,
          detect_ms);
      absl::MutexLock lock(&departures_mu_);
      departures_.push_back(StartNamedThread("departure", [this, node, reason] { Depart(node, reason); }));
    }
  }
}

std::string Machine::LinkCommand(const std::vector<std::string>& words) {
  if (words.size() != 2) return "error: link takes two arguments: NODE SPEC (e.g. 1 latency=20ms, as --link)";
  if (!home_) return "error: this VM runs on one node; it has no links";
  uint32_t node = 0;
  const size_t edges = home_->edge_count();
  if (!absl::SimpleAtoi(words[0], &node) || node == 0 || node > edges) {
    return absl::StrFormat("error: link: no edge node '%s' (1-%u)", words[0], edges);
  }
  absl::StatusOr<dsm::LinkEmulation> link = dsm::ParseLinkSpec(words[1], "link");
  if (!link.ok()) return absl::StrFormat("error: %s", link.status().message());
  if (absl::Status st = home_->SetLink(static_cast<uint16_t>(node), *link); !st.ok()) {
    return absl::StrFormat("error: link: %s", st.message());
  }
  return absl::StrFormat("vm %s: the home's link to node %u is now %s", config_.name, node, dsm::FormatLinkSpec(*link));
}

void Machine::JoinDepartures() {
  std::vector<std::thread> departures;
  {
    absl::MutexLock lock(&departures_mu_);
    departures.swap(departures_);
  }
  for (std::thread& t : departures) t.join();
}

std::string Machine::Depart(uint16_t node, const std::string& reason) {
  absl::MutexLock departing(&depart_mu_);  // one at a time: a ctl detach and the link monitor may race
  const std::vector<std::string> edges = home_->EdgeAddresses();
  if (node == 0 || node > edges.size() || home_->Released(node)) return "";
  const std::string& edge = edges[node - 1];
  const auto start = std::chrono::steady_clock::now();
  std::vector<uint32_t> moved;
  for (uint32_t v = 1; v < config_.vcpu_ids(); ++v) {
    if (forwarding_router_->NodeOf(v) != node) continue;
    absl::StatusOr<HomeVcpuMover::Moved> m = mover_->Move(v, 0, absl::Seconds(5));
    if (!m.ok()) {
      run_control_.Stop(exit_status::kHostFailure, absl::StrFormat("edge %s (node %u) leaving: vCPU %u: %s", edge,
                                                                   node, v, m.status().message()));
      return "";
    }
    moved.push_back(v);
  }
  const auto vcpus_home = std::chrono::steady_clock::now();
  forwarding_router_->RemoveNode(node);
  home_->ReleaseNode(node);
  // The node hands its pages back as it leaves the DSM; a page still there after that is lost to the guest. A node
  // holding many (a memory edge) takes as long as it keeps handing them back: the timeout bounds a stall.
  constexpr auto kPagesTimeout = std::chrono::seconds(10);
  uint64_t left = 0;
  uint64_t fewest = UINT64_MAX;
  auto progress = vcpus_home;
  while (true) {
    const std::vector<uint64_t> owned = home_->dsm().OwnedPagesPerNode();
    left = node < owned.size() ? owned[node] : 0;
    const auto now = std::chrono::steady_clock::now();
    if (left < fewest) {
      fewest = left;
      progress = now;
    }
    if (left == 0 || run_control_.stopping() || now - progress > kPagesTimeout) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (left != 0) {
    if (!run_control_.stopping()) {
      run_control_.Stop(exit_status::kHostFailure, absl::StrFormat("edge %s (node %u) left with %u guest pages",
                                                                   edge, node, left));
    }
    return "";
  }
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  const auto pages_home = std::chrono::steady_clock::now();
  const std::string given_back = GiveBackLentCpus(moved) + GiveBackLentMemory(node);
  ReleaseSpareDomain(node);
  const std::string report =
      absl::StrFormat("edge %s (node %u) left (%s): vCPUs %s moved home in %.1f ms, its pages in %.1f ms more%s", edge,
                      node, reason, moved.empty() ? "none" : FormatVcpuList(moved), ms(vcpus_home - start),
                      ms(pages_home - vcpus_home), given_back);
  std::fprintf(stderr, "coalesce run: %s\n", report.c_str());
  return report;
}

std::optional<uint16_t> Machine::NodeByName(const std::string& name) const {
  if (name == "home") return 0;
  const std::vector<std::string> edges = home_ ? home_->EdgeAddresses() : std::vector<std::string>{};
  uint32_t number = 0;
  if (absl::SimpleAtoi(name, &number)) {
    if (number <= edges.size()) return static_cast<uint16_t>(number);
    return std::nullopt;
  }
  // An address: the node it serves now (an agent that left and was attached again has a newer node).
  for (size_t e = edges.size(); e > 0; --e) {
    if (edges[e - 1] == name && !home_->Released(static_cast<uint16_t>(e))) return static_cast<uint16_t>(e);
  }
  return std::nullopt;
}

std::string Machine::AttachCommand(const std::vector<std::string>& words) {
  if (words.size() == 2 && absl::StartsWith(words[1], "memory=")) return AttachMemoryEdge(words[0], words[1].substr(7));
  if (words.size() != 2 || !absl::StartsWith(words[1], "vcpus=")) {
    return "error: attach takes two arguments: ADDR vcpus=LIST (e.g. 127.0.0.1:7001 vcpus=2-3) or ADDR memory=SIZE";
  }
  if (!mover_) return "error: only a coalesced VM (coalesce run --edge) can attach edges";
  if (!running_.load()) return "error: the VM is still starting";
  // The new node's vCPUs would run: its runtime starts unpaused.
  if (std::string refused = RefuseWhilePaused("attach"); !refused.empty()) return refused;
  if (absl::StatusOr<HostPort> hp = ParseHostPort(words[0], "attach"); !hp.ok()) {
    return absl::StrFormat("error: %s", hp.status().message());
  }
  absl::StatusOr<std::vector<uint32_t>> vcpus = ParseVcpuList(words[1].substr(6));
  if (!vcpus.ok()) return absl::StrFormat("error: attach: vcpus: %s", vcpus.status().message());
  for (uint32_t v : *vcpus) {
    if (v == 0 || v >= config_.vcpu_ids()) {
      return absl::StrFormat("error: attach: vCPU %u cannot move to an edge (vCPUs 1-%u)", v, config_.vcpu_ids() - 1);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<uint16_t> node = home_->AttachEdge(EdgePlacementSpec{.agent_address = words[0], .vcpus = *vcpus});
  if (!node.ok()) return absl::StrFormat("error: attach %s: %s", words[0], node.status().message());
  forwarding_router_->AddNode(*node);
  const auto joined = std::chrono::steady_clock::now();
  std::vector<std::string> pauses;
  for (uint32_t v : *vcpus) {
    absl::StatusOr<HomeVcpuMover::Moved> moved = mover_->Move(v, *node, absl::Seconds(10));
    if (!moved.ok()) {
      return absl::StrFormat("error: attach %s: node %u joined, but moving vCPU %u there: %s", words[0], *node, v,
                             moved.status().message());
    }
    pauses.push_back(absl::StrFormat("%.3f", absl::ToDoubleMilliseconds(moved->pause)));
  }
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  // vCPUs the guest has not seen yet are plugged in now that they wait there (the guest onlines them).
  std::string plugged_note;
  if (cpu_hotplug_ != nullptr) {
    const auto moved_all = std::chrono::steady_clock::now();
    // CPUs the guest has not seen join the edge's own domain, where the guest has one to give.
    uint8_t domain = 0;
    if (std::any_of(vcpus->begin(), vcpus->end(), [this](uint32_t v) { return !cpu_hotplug_->Present(v); })) {
      domain = SpareDomainFor(*node);
    }
    absl::StatusOr<std::vector<uint32_t>> plugged = PlugVcpus(*vcpus, domain);
    if (!plugged.ok()) {
      return absl::StrFormat("error: attach %s: node %u runs vCPUs %s, but plugging them into the guest: %s", words[0],
                             *node, FormatVcpuList(*vcpus), plugged.status().message());
    }
    if (!plugged->empty()) {
      absl::MutexLock lock(&lent_mu_);
      lent_vcpus_.insert(lent_vcpus_.end(), plugged->begin(), plugged->end());
    }
    if (!plugged->empty()) {
      plugged_note =
          absl::StrFormat("; vCPUs %s plugged in%s, the guest took them in %.1f ms", FormatVcpuList(*plugged),
                          DomainNote(domain), ms(std::chrono::steady_clock::now() - moved_all));
    }
  }
  return absl::StrFormat(
      "vm %s: edge %s attached as node %u in %.1f ms (lease and runtime %.1f ms, vCPUs %s moved there: paused %s ms)%s",
      config_.name, words[0], *node, ms(std::chrono::steady_clock::now() - start), ms(joined - start),
      FormatVcpuList(*vcpus), absl::StrJoin(pauses, ", "), plugged_note);
}

std::string Machine::DetachCommand(const std::vector<std::string>& words) {
  if (words.size() != 1) return "error: detach takes one argument: ADDR or a node number";
  if (!mover_) return "error: this VM runs on one node; there is nothing to detach";
  if (!running_.load()) return "error: the VM is still starting";
  const std::optional<uint16_t> node = NodeByName(words[0]);
  if (!node || *node == 0) return absl::StrFormat("error: detach: no edge node '%s' in this VM", words[0]);
  if (home_->Released(*node)) return absl::StrFormat("error: detach: node %u has left already", *node);
  const auto start = std::chrono::steady_clock::now();
  const std::string report = Depart(*node, "detached by coalesce ctl");
  // An empty report is a departure that did not finish. One that did stands even if the guest ended right after it
  // (a guest may end on the eject the departure asked for).
  if (report.empty()) {
    if (run_control_.stopping()) return absl::StrFormat("error: detach: the VM stopped: %s", run_control_.reason());
    return absl::StrFormat("error: detach: node %u left first by another path (its link failed)", *node);
  }
  return absl::StrFormat("vm %s: node %u detached in %.1f ms: its vCPUs run at home, its pages are home (%s)",
                         config_.name, *node,
                         std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count(),
                         report);
}

std::string Machine::MoveCommand(const std::vector<std::string>& words) {
  if (words.size() != 2) return "error: move takes two arguments: VCPU NODE (home, a node number or an edge address)";
  if (!mover_) return "error: this VM runs on one node; there is nowhere to move a vCPU (coalesce run --edge)";
  if (!running_.load()) return "error: the VM is still starting";
  uint32_t vcpu = 0;
  if (!absl::SimpleAtoi(words[0], &vcpu)) return absl::StrFormat("error: move: '%s' is not a vCPU number", words[0]);
  const std::optional<uint16_t> node = NodeByName(words[1]);
  if (!node) {
    return absl::StrFormat("error: move: no node '%s' (home, 0-%u, or an edge address from `status`)", words[1],
                           home_ ? home_->edge_count() : 0);
  }
  if (*node != 0 && home_->Released(*node)) return absl::StrFormat("error: move: node %u has left the VM", *node);
  absl::StatusOr<HomeVcpuMover::Moved> moved = mover_->Move(vcpu, *node, absl::Seconds(10));
  if (!moved.ok()) return absl::StrFormat("error: move: %s", moved.status().message());
  return absl::StrFormat("vm %s: vCPU %u moved from node %u to node %u; paused %.3f ms", config_.name, vcpu,
                         moved->from, moved->to, absl::ToDoubleMilliseconds(moved->pause));
}

std::string Machine::StatusReport() {
  const uint64_t pages = PresentMemory() / platform::kPageSize;
  const std::vector<std::string> edges = home_ ? home_->EdgeAddresses() : std::vector<std::string>{};
  std::vector<uint64_t> owned(1 + edges.size(), 0);
  // The links now, measured for this answer (3 probes each), beside the figure from the start.
  std::vector<absl::Duration> now;
  std::string probe_error;
  if (home_) {
    absl::StatusOr<std::vector<absl::Duration>> rtt = home_->MeasureRoundTrips(3);
    if (rtt.ok()) {
      now = *std::move(rtt);
    } else {
      probe_error = std::string(rtt.status().message());
    }
    const std::vector<uint64_t> per_node = home_->dsm().OwnedPagesPerNode();
    for (size_t n = 0; n < owned.size() && n < per_node.size(); ++n) owned[n] = per_node[n];
  } else {
    owned[0] = pages;
  }
  auto mib = [](uint64_t p) { return static_cast<double>(p * platform::kPageSize) / (1 << 20); };
  // Where each vCPU runs now (moves change it), and those on their way home.
  std::vector<std::vector<uint32_t>> vcpus_on(owned.size());
  std::vector<uint32_t> moving;
  std::vector<uint32_t> absent;  // possible, not plugged in (ACPI hotplug)
  const std::vector<uint32_t> present = cpu_hotplug_ ? cpu_hotplug_->PresentSlots() : std::vector<uint32_t>{};
  for (uint32_t v = 0; v < config_.vcpu_ids(); ++v) {
    if (cpu_hotplug_ != nullptr && !std::binary_search(present.begin(), present.end(), v)) {
      absent.push_back(v);
      continue;
    }
    const uint16_t node = forwarding_router_ ? forwarding_router_->NodeOf(v) : 0;
    if (node < vcpus_on.size()) {
      vcpus_on[node].push_back(v);
    } else {
      moving.push_back(v);
    }
  }
  auto list = [](const std::vector<uint32_t>& v) { return v.empty() ? std::string("none") : FormatVcpuList(v); };
  std::string out = absl::StrFormat("vm %s: %s, %u vCPUs, %.0f MiB of RAM (%u pages), %u node(s)\n", config_.name,
                                    pause_->paused() ? "paused" : "running", config_.vcpu_ids() - absent.size(),
                                    mib(pages), pages, owned.size());
  absl::StrAppendFormat(&out, "node 0 home: vCPUs %s, owns %u pages (%.1f MiB)\n", list(vcpus_on[0]), owned[0],
                        mib(owned[0]));
  for (size_t e = 0; e < edges.size(); ++e) {
    absl::StrAppendFormat(&out, "node %u edge %s: vCPUs %s, owns %u pages (%.1f MiB), round trip", e + 1,
                          edges[e], list(vcpus_on[e + 1]), owned[e + 1],
                          mib(owned[e + 1]));
    if (e + 1 < now.size()) {
      absl::StrAppendFormat(&out, " %.3f ms now,", absl::ToDoubleMilliseconds(now[e + 1]));
      if (now[e + 1] > config_.latency_bound) out += " OVER policies.latency_bound_us,";
    }
    absl::StrAppendFormat(&out, " %.3f ms at start\n",
                          e + 1 < link_rtt_.size() ? absl::ToDoubleMilliseconds(link_rtt_[e + 1]) : 0.0);
  }
  if (!moving.empty()) absl::StrAppendFormat(&out, "moving: vCPUs %s\n", FormatVcpuList(moving));
  if (cpu_hotplug_ != nullptr) {
    // Writes the guest made that the controller ignored (an eject of CPU 0, an id out of range): a guest's AML
    // or driver at odds with the controller shows here.
    absl::StrAppendFormat(&out, "hotplug: vCPUs %s absent, at most %u (setvcpus); guest writes ignored: %u\n",
                          list(absent), config_.vcpu_ids(), cpu_hotplug_->ignored_writes());
  }
  out += MemoryHotplugStatus();
  if (home_) absl::StrAppendFormat(&out, "leases renewed: %u\n", home_->lease_renewals());
  out += HomeMemoryStatus();
  if (!probe_error.empty()) absl::StrAppendFormat(&out, "links not measured now: %s\n", probe_error);
  return out;
}

absl::Status Machine::StartCoalescence() {
  if (config_.edges.empty()) return absl::OkStatus();
  // The guest's TSC on every node is host TSC - offset, the offset KVM gave vCPU 0 here: exact where KVM has
  // the TSC-offset attribute, else estimated from a read of IA32_TSC.
  constexpr uint32_t kMsrIa32Tsc = 0x10;
  int64_t tsc_offset = 0;
  if (absl::StatusOr<int64_t> kvm_offset = vcpus_[0]->fd().GetTscOffset(); kvm_offset.ok()) {
    tsc_offset = -*kvm_offset;
  } else {
    ASSIGN_OR_RETURN(auto tsc, vcpus_[0]->fd().GetMsrs({kMsrIa32Tsc}));
    tsc_offset = static_cast<int64_t>(__rdtsc() - tsc[0]);
  }
  CoalescenceConfig cc;
  cc.edges = config_.edges;
  cc.vcpu_count = config_.vcpu_ids();
  cc.data_plane_host = config_.data_plane_host;
  cc.data_plane_port = config_.data_plane_port;
  cc.data_plane_advertise = config_.data_plane_advertise;
  cc.home_only_memory = config_.home_only_memory;
  cc.home_memory_allowance = config_.home_memory_allowance;
  cc.boot_memory_shares = boot_memory_shares_;
  cc.link = config_.link;
  cc.max_edge_load = config_.max_edge_load;
  cc.lease_seconds = config_.lease_seconds;
  cc.control_plane = config_.control_plane;
  cc.tsc_offset = tsc_offset;
  cc.cpu_model = CpuModelName(config_.cpu_model);
  CoalescenceHome::Handlers h;
  h.on_io = [this](const node_msg::IoRequest& io, std::vector<uint8_t>* data) {
    uint8_t buf[8] = {};
    std::span<uint8_t> rd(buf, io.size);
    switch (io.kind) {
      case node_msg::IoKind::kPioRead:
        io_handler_->PioRead(io.vcpu_id, static_cast<uint16_t>(io.address), rd);
        data->assign(rd.begin(), rd.end());
        break;
      case node_msg::IoKind::kMmioRead:
        io_handler_->MmioRead(io.vcpu_id, io.address, rd);
        data->assign(rd.begin(), rd.end());
        break;
      case node_msg::IoKind::kPioWrite:
        io_handler_->PioWrite(io.vcpu_id, static_cast<uint16_t>(io.address), io.data);
        break;
      case node_msg::IoKind::kMmioWrite:
        io_handler_->MmioWrite(io.vcpu_id, io.address, io.data);
        break;
    }
  };
  h.deliver_from_node = [this](uint16_t from, const ApicMessage& msg) {
    return forwarding_router_->DeliverFromNode(from, msg);
  };
  h.on_eoi = [this](uint8_t vector) { router_->BroadcastEoi(vector); };
  h.on_move = [this](uint16_t from, const node_msg::NodeMessage& message) {
    if (auto* leaving = std::get_if<node_msg::Leaving>(&message)) {
      // Not on this receiver thread: the moves wait for messages it must read.
      absl::MutexLock lock(&departures_mu_);
      departures_.push_back(
          StartNamedThread("departure", [this, from, reason = leaving->reason] { Depart(from, reason); }));
    } else if (mover_) {
      mover_->OnMessage(from, message);
    }
  };
  h.on_stop = [this](int status, std::string reason) { run_control_.Stop(status, std::move(reason)); };
  h.on_pause_done = [this](uint16_t from, const node_msg::PauseDone& done) { pause_->OnAnswer(from, done); };
  // The mover exists before the edges start: their messages may name it as soon as they run.
  mover_ = std::make_unique<HomeVcpuMover>(vcpus_, lapics_, *forwarding_router_, run_control_,
                                           [this] { return home_ ? home_->edge_count() + 1 : 1; },
                                           [this](uint16_t node, const node_msg::NodeMessage& message) {
                                             return home_->Send(node, message);
                                           });
  ASSIGN_OR_RETURN(home_, CoalescenceHome::Start(cc, *memory_, std::move(h)));
  RETURN_IF_ERROR(MeasureLinks());
  return absl::OkStatus();
}

int Machine::Run() {
  if (config_.console_input) {
    console_input_ = std::make_unique<ConsoleInput>(
        [this](std::span<const uint8_t> bytes) { uart_->ReceiveBytes(bytes); },
        [this] { run_control_.Stop(exit_status::kPowerOff, "stopped from the console (Ctrl-A x)"); });
  }
  // The vCPUs absent at boot start too: they wait for a SIPI the guest sends only once they are plugged.
  for (uint32_t i = 0; i < config_.vcpu_ids(); ++i) {
    if (IsLocal(i)) vcpus_[i]->Start();
  }
  running_.store(true);
  std::thread sampler;
  if (config_.sample_rip) sampler = StartNamedThread("rip-sampler", [this] { SampleRips(); });
  std::thread link_monitor;
  if (home_ && config_.latency_bound < absl::InfiniteDuration()) {
    link_monitor = StartNamedThread("link-monitor", [this] { MonitorLinks(); });
  }
  run_control_.WaitForStop();
  if (sampler.joinable()) sampler.join();  // it polls stopping() between samples
  if (link_monitor.joinable()) link_monitor.join();  // likewise, between rounds of probes
  Shutdown();
  std::fflush(stdout);
  return run_control_.exit_status();
}

// At 97 Hz (prime, so it does not beat with the guest's 100/250/1000 Hz ticks), asks every vCPU where it is.
// Unlike the kicks that deliver interrupts, these land independently of what the guest is doing, so time
// spent in interrupt handlers shows up too.
void Machine::SampleRips() {
  constexpr auto kPeriod = std::chrono::microseconds(1000000 / 97);
  while (!run_control_.stopping()) {
    for (auto& v : vcpus_) {
      if (v) v->RequestRipSample();
    }
    std::this_thread::sleep_for(kPeriod);
  }
}

void Machine::RequestRegisterDumps() {
  for (auto& v : vcpus_) {
    if (v) v->RequestRegisterDump();
  }
}

void Machine::PressPowerButton() {
  if (acpi_pm_ != nullptr) acpi_pm_->PressPowerButton();
}

void Machine::Shutdown() {
  control_.reset();  // no `coalesce ctl` command runs while the machine comes apart
  // No vCPU moves any more: a departure still moving one returns at once (also when the VM never ran, e.g. an
  // edge refused at start, whose runtime may ask to leave as its agent stops it).
  if (mover_) mover_->Cancel();
  JoinDepartures();
  for (auto& v : vcpus_) {
    if (v) v->Kick();
  }
  // The data plane goes first: a vCPU thread may be blocked in a page fault on a page that a stopped (or
  // dead) edge node held; stopping the DSM releases it, so the join below cannot hang.
  if (home_) home_->Shutdown();
  JoinDepartures();  // one started by a message that arrived while the data plane was stopping
  for (auto& v : vcpus_) {
    if (v) v->Join();
  }
  // A LAPIC or PIT timer still armed would fire into a vCPU while members are destroyed (the vCPUs before the
  // LAPICs whose callbacks kick them): no callback may run past this point.
  if (timers_) timers_->Stop();
  // Likewise a disk's completion thread: its interrupts would reach LAPICs and vCPUs being destroyed.
  for (virtio::VirtioMmio* d : virtio_devices_) d->Quiesce();
  console_input_.reset();
}

std::map<uint64_t, uint64_t> Machine::RipSamples() const {
  std::map<uint64_t, uint64_t> all;
  for (const auto& v : vcpus_) {
    if (!v) continue;
    for (const auto& [rip, n] : v->stats().rip_samples()) all[rip] += n;
  }
  return all;
}

void Machine::ReplayPostedWrites() {
  if (posted_writes_ == nullptr || !posted_writes_->HasWrites()) return;
  posted_writes_->Drain([this](uint64_t addr, std::span<const uint8_t> data) { (void)mmio_bus_.Write(addr, data); });
}

bool Machine::PollDeviceCompletions() {
  bool raised = false;
  for (virtio::VirtioMmio* dev : virtio_devices_) raised |= dev->PollUsed();
  return raised;
}

std::string Machine::StatsReport() const {
  std::string out;
  for (const auto& v : vcpus_) {
    if (!v) continue;
    absl::StrAppendFormat(&out, "vcpu%u: state=%s injections=%u pv_eois=%u halts=%u halts_polled=%u exits:", v->id(),
                          VcpuStateName(v->state()), v->stats().injections(), v->stats().pv_eois(),
                          v->stats().halts(), v->stats().halts_polled());
    for (size_t k = 0; k < kExitKinds; ++k) {
      if (uint64_t n = v->stats().exits(k)) absl::StrAppendFormat(&out, " %s=%u", ExitKindNameByIndex(k), n);
    }
    auto emu = v->stats().emulations();
    if (!emu.empty()) {
      out += " emulated:";
      for (const auto& [name, n] : emu) absl::StrAppendFormat(&out, " %s=%u", name, n);
    }
    out += "\n";
    if (v->state() == Vcpu::State::kStopped) out += v->DumpRegisters() + "\n";
  }
  absl::StrAppendFormat(&out, "bus: unclaimed pio=%u mmio=%u\n", pio_bus_.unclaimed_accesses(),
                        mmio_bus_.unclaimed_accesses());
  if (home_) out += home_->StatsReport();
  return out;
}

}  // namespace coalesce
