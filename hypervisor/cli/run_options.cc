#include "hypervisor/cli/run_options.h"

#include "absl/strings/str_cat.h"
#include "edge_monitor/size.h"
#include "hypervisor/base/flag_parser.h"

namespace coalesce {

const char kTopUsage[] =
    "usage: coalesce <command> [flags]\n"
    "\n"
    "Coalesce: a many-to-one hypervisor on KVM. One guest draws vCPUs and memory from this machine (home)\n"
    "and from edge hosts running `coalesce edge`.\n"
    "\n"
    "commands:\n"
    "  run    boot a guest (this node is home); see `coalesce run --help`\n"
    "  edge   run the edge agent that hosts vCPUs for home nodes; see `coalesce edge --help`\n"
    "  ctl    send a running VM a command (status, shutdown); see `coalesce ctl --help`\n"
    "  daemon serve libvirt's protocol so virsh manages guests; see `coalesce daemon --help`\n"
    "  pki    create a CA and node certificates for mutual TLS; see `coalesce pki --help`\n"
    "  discover  list the edge agents announced on the local network (DNS-SD); see `coalesce discover --help`\n"
    "  help   this text\n"
    "\n"
    "exit status of `run`: 0 guest powered off; (V << 1) | 1 guest wrote V to the debug-exit port 0xf4;\n"
    "2 bad command line or input; 4 guest reset; 6 guest crashed (register dump printed); 8 host failure.\n";

const char kRunUsage[] =
    "usage: coalesce run --kernel FILE [flags]\n"
    "\n"
    "Boots a guest kernel (Linux bzImage or Multiboot v1 ELF) with its console on stdout/stdin (COM1).\n"
    "\n"
    "flags:\n"
    "  --kernel FILE       kernel to boot: a Linux bzImage or a Multiboot (v1) ELF image (required,\n"
    "                      unless the profile names it)\n"
    "  --initrd FILE       initial ramdisk (Linux) or first Multiboot module\n"
    "  --append STRING     kernel command line\n"
    "  --vcpus N           number of vCPUs, 1-255 (default 1)\n"
    "  --max-vcpus N       the most vCPUs the running guest may have: vCPUs --vcpus..N-1 are absent at boot\n"
    "                      and `coalesce ctl setvcpus` or `attach` plugs them in by ACPI hotplug\n"
    "                      (docs/HOTPLUG.md; default --vcpus: no hotplug)\n"
    "  --memory SIZE       guest RAM, e.g. 512M, 2G, or bytes (default 256M, at least 16M)\n"
    "  --max-memory SIZE   the most RAM the running guest may have: --memory plus 128M slots that are absent at\n"
    "                      boot and that `coalesce ctl setmemory` or a memory edge's `attach` plugs in by ACPI\n"
    "                      memory hotplug (docs/HOTPLUG.md; default --memory: no memory hotplug)\n"
    "  --disk FILE[,format=qcow2|raw][,readonly=on][,shadow=on]\n"
    "                      a virtio block device (/dev/vda, vdb, ...) served by qemu-storage-daemon;\n"
    "                      repeatable, up to 8. Without format= a qcow2 header means qcow2, else raw.\n"
    "                      shadow=on: requests fail, not hang, if the daemon dies (docs/DISKS.md)\n"
    "  --net tap=NAME[,mac=52:54:00:..]\n"
    "                      a virtio network device on the existing TAP interface NAME; repeatable\n"
    "  --profile FILE      coalescence profile (protobuf text format or JSON); flags override it\n"
    "  --edge ADDR=LIST    place vCPUs LIST (e.g. 2,3 or 2-3) on the edge agent at ADDR (host:port);\n"
    "                      repeatable\n"
    "  --discover ADDR,... candidate edge agents (host:port): each is asked for its capacity, load and\n"
    "                      round trip, and the vCPUs from --home-vcpus up are placed on those the profile's\n"
    "                      policies accept, nearest first (instead of --edge; docs/COALESCENCE.md).\n"
    "                      The word dns-sd in the list stands for every agent announced on the local\n"
    "                      network (`coalesce edge --announce`), browsed for 3 s\n"
    "  --home-vcpus N      with --discover: vCPUs 0..N-1 stay at home (default 1)\n"
    "  --memory-edge ADDR=SIZE  the edge agent at ADDR lends SIZE of memory and runs no vCPUs: the home\n"
    "                      spills its oldest pages there when over --home-memory; repeatable\n"
    "  --home-memory SIZE  at most SIZE of guest RAM stays on this host; the memory edges hold the rest\n"
    "                      (together at least --memory less SIZE; docs/COALESCENCE.md, \"Memory edges\")\n"
    "  --data-plane H:P    address edge nodes use to reach this node's data plane (default\n"
    "                      127.0.0.1:0, any port); set it when edges are on other hosts\n"
    "  --home-only-memory R  guest-physical ranges START+SIZE[,...] (e.g. 0x1000000+64K) whose pages never\n"
    "                      leave home: edge vCPUs reach them by forwarded accesses (data only, no code or\n"
    "                      page tables there; docs/SECURITY.md)\n"
    "  --data-plane-advertise H:P  the address edges dial instead, where it differs from --data-plane\n"
    "                      (home behind NAT or a port forward); needs a fixed --data-plane port\n"
    "  --link SPEC         emulate a link on every data-plane link, both ways: a class (infiniband, pcie,\n"
    "                      5g-urllc, wifi6e, 5g, wifi-p90), optionally ,jitter=..,bandwidth=.., or\n"
    "                      latency=2ms[,jitter=200us][,bandwidth=1Gbit] (docs/BENCHMARKS.md)\n"
    "  --name NAME         the VM's name: `coalesce ctl --vm NAME status|shutdown` reaches it (default:\n"
    "                      the profile's name, else coalesce-PID)\n"
    "  --numa SPEC         the guest's NUMA domains (ACPI SRAT and SLIT): auto (default: one per node of a\n"
    "                      coalesced VM, distances from the measured round trips), off, or on one host\n"
    "                      cpus=0-1[,memory=128M]/cpus=2-3[,memory=128M]/... (docs/NUMA.md)\n"
    "  --cpu MODEL         CPU model the guest sees: host, baseline or auto (default: auto = host\n"
    "                      with hardware virtualization, baseline on software-virtualized KVM)\n"
    "  --rip-samples FILE  sample the guest's RIP whenever a vCPU is interrupted and write \"RIP COUNT\"\n"
    "                      lines (hex, decimal) to FILE at exit: a profile of where guest time goes\n"
    "  --halt-poll-us N    how long a halted vCPU at home spins for an interrupt before it sleeps, at\n"
    "                      most (adaptive, as KVM's halt_poll_ns; default 200, 0: never; docs/INTERRUPTS.md)\n"
    "  --stats             print exit, injection and emulation counters when the guest stops\n"
    "  --tls-ca FILE       CA certificate(s), PEM: edge agents must present a certificate from it\n"
    "  --tls-cert FILE     this node's certificate, PEM; --tls-key FILE: its key (`coalesce pki`)\n"
    "  --tls-crl FILE      the CA's revocation list, PEM: agents whose certificate it lists are refused\n"
    "                      (read again when it changes; `coalesce pki revoke`)\n"
    "  --insecure          allow a plaintext control plane to non-loopback addresses (the data plane is\n"
    "                      always sealed, but its key then travels in clear; docs/SECURITY.md)\n"
    "  --log-level LEVEL   debug, info, warning (default) or error; also COALESCE_LOG\n"
    "  --help              this text\n";

namespace {

// A size with a K/M/G/T suffix, stored as a byte count (`bytes`) or as checked text (`text`).
FlagParser::Setter StoreSize(uint64_t* bytes, std::string* text = nullptr) {
  return [bytes, text](absl::string_view flag, const std::string& value) -> absl::Status {
    absl::StatusOr<uint64_t> n = ParseSize(value, std::string(flag));
    if (!n.ok()) return n.status();
    if (bytes != nullptr) *bytes = *n;
    if (text != nullptr) *text = value;
    return absl::OkStatus();
  };
}

}  // namespace

absl::StatusOr<RunOptions> ParseRunOptions(const std::vector<std::string>& args) {
  RunOptions o;
  FlagParser flags;
  flags.Switch("--help", &o.help)
      .Alias("-h", "--help")
      .Switch("--stats", &o.print_stats)
      .Switch("--insecure", &o.insecure)
      .Value("--kernel", StoreText(&o.kernel))
      .Value("--initrd", StoreText(&o.initrd))
      .Value("--append", StoreText(&o.append))
      .Value("--profile", StoreText(&o.profile))
      .Value("--disk", AppendText(&o.disks))
      .Value("--net", AppendText(&o.nets))
      .Value("--edge", AppendText(&o.edges))
      .Value("--data-plane", StoreText(&o.data_plane))
      .Value("--data-plane-advertise", StoreText(&o.data_plane_advertise))
      .Value("--home-memory", StoreText(&o.home_memory))
      .Value("--memory-edge", AppendText(&o.memory_edges))
      .Value("--home-only-memory", StoreText(&o.home_only_memory))
      .Value("--link", StoreText(&o.link))
      .Value("--discover", StoreText(&o.discover))
      .Value("--home-vcpus", StoreUint32(&o.home_vcpus, 1, kMaxVcpus))  // vCPU 0 runs at home
      .Value("--name", StoreText(&o.name))
      .Value("--numa", StoreText(&o.numa))
      .Value("--tls-ca", StoreNonEmpty(&o.tls.ca, "a file"))
      .Value("--tls-cert", StoreNonEmpty(&o.tls.cert, "a file"))
      .Value("--tls-key", StoreNonEmpty(&o.tls.key, "a file"))
      .Value("--tls-crl", StoreNonEmpty(&o.tls.crl, "a file"))
      .Value("--cpu", StoreChoice(&o.cpu_model, {"host", "baseline", "auto"}))
      .Value("--rip-samples", StoreText(&o.rip_samples))
      .Value("--halt-poll-us", StoreUint32(&o.halt_poll_us, 0, 100000))
      .Value("--log-level", StoreText(&o.log_level))
      .Value("--vcpus", StoreUint32(&o.vcpus))  // range checked by ValidateRunOptions, after the profile
      .Value("--max-vcpus", StoreUint32(&o.max_vcpus, 1, kMaxVcpus))
      // checked against the guest's memory with the profile (guest.max_memory)
      .Value("--max-memory", StoreSize(nullptr, &o.max_memory))
      .Value("--memory", StoreSize(&o.memory));
  if (absl::Status st = flags.Parse(args); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(st.message(), " (see coalesce run --help)"));
  }
  o.vcpus_set = flags.Seen("--vcpus");
  o.memory_set = flags.Seen("--memory");
  return o;
}

absl::Status ValidateRunOptions(const RunOptions& o) {
  if (o.kernel.empty()) return absl::InvalidArgumentError("no kernel: give --kernel FILE (or a profile)");
  if (o.vcpus == 0 || o.vcpus > kMaxVcpus) {
    return absl::InvalidArgumentError(
        absl::StrCat("--vcpus: ", o.vcpus, " is out of range: between 1 and ", kMaxVcpus));
  }
  if (o.max_vcpus != 0 && o.max_vcpus < o.vcpus) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-vcpus: ", o.max_vcpus, " is fewer than the ", o.vcpus, " vCPUs the guest boots with"));
  }
  if (o.memory < (16ULL << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("--memory: ", o.memory, " bytes is too small: at least 16M"));
  }
  if (o.memory % 4096 != 0) return absl::InvalidArgumentError("--memory: must be a multiple of 4 KiB");
  return absl::OkStatus();
}

}  // namespace coalesce
