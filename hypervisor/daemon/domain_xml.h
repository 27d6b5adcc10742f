// Domain XML (libvirt's format, parsed with libxml2) <-> DomainDefinition, and the `coalesce run` command
// line a definition stands for. Standard libvirt elements where they exist; the coalescence placement lives in
// <metadata> under our namespace:
//
//   <metadata>
//     <coalesce:coalescence xmlns:coalesce="https://coalesce.dev/xmlns/domain/1">
//       <coalesce:profile file="/etc/coalesce/lab.textproto"/>        (optional)
//       <coalesce:edge address="10.0.0.2:7000" vcpus="2-3"/>         (repeatable)
//       <coalesce:data-plane address="10.0.0.1:0"/>                  (optional)
//     </coalesce:coalescence>
//   </metadata>
//
// Anything the daemon cannot honour is refused with the element's name and line, never ignored. Pure.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace coalesce::daemon {

inline constexpr char kCoalesceXmlNamespace[] = "https://coalesce.dev/xmlns/domain/1";

using Uuid = std::array<uint8_t, 16>;

struct EdgePlacement {
  std::string address;  // host:port of a `coalesce edge` agent
  std::string vcpus;    // e.g. "2-3" or "2,3"
};

// <disk type='file' device='disk'>: <driver name='qemu' type='qcow2|raw'/>, <source file='...'/>,
// <target dev='vdX' bus='virtio'/>, optional <readonly/>. Targets name the order: vda, vdb, ... without gaps.
struct DiskDefinition {
  std::string file;
  std::string format;  // "qcow2", "raw" or "" (detected: docs/DISKS.md)
  bool readonly = false;
  std::string target;  // "vda", "vdb", ...
};

// <interface type='ethernet'>: <target dev='TAP'/> (an existing TAP interface), optional <mac address='..'/>
// and <model type='virtio'/>. docs/NETWORK.md.
struct InterfaceDefinition {
  std::string tap;
  std::string mac;  // "" = Coalesce's default
};

struct DomainDefinition {
  std::string name;
  Uuid uuid{};
  uint64_t memory_kib = 0;
  uint32_t vcpus = 1;          // <vcpu>: the most the guest may have
  uint32_t current_vcpus = 0;  // <vcpu current='N'>: present at boot, the rest plugged in later (0: vcpus)
  std::string kernel;
  std::string initrd;
  std::string cmdline;
  std::string cpu_mode;  // "" (auto), "host-passthrough" -> --cpu host, "custom" baseline -> --cpu baseline
  std::vector<DiskDefinition> disks;  // in target order
  std::vector<InterfaceDefinition> interfaces;
  std::string profile;
  std::vector<EdgePlacement> edges;
  std::string data_plane;
  std::string title;
  std::string description;
};

// Parses a domain definition. `generate_uuid` fills a missing <uuid>. Errors are InvalidArgument naming the
// element and its line ("line 7: <vcpu>: '0' is not a vCPU count of 1-255").
absl::StatusOr<DomainDefinition> ParseDomainXml(const std::string& xml, bool generate_uuid = true);
// The normalized XML of a definition (what `virsh dumpxml` shows); ParseDomainXml reads it back unchanged.
std::string FormatDomainXml(const DomainDefinition& def, int id = -1);

std::string FormatUuid(const Uuid& uuid);
absl::StatusOr<Uuid> ParseUuid(const std::string& text);
Uuid RandomUuid();
// A name usable as a file name in the state directory and as a virsh argument.
absl::Status ValidateDomainName(const std::string& name);

// vCPUs present when the guest starts.
inline uint32_t BootVcpus(const DomainDefinition& def) {
  return def.current_vcpus != 0 && def.current_vcpus < def.vcpus ? def.current_vcpus : def.vcpus;
}
// The name its `coalesce run` gets (--name; its control socket, through which the daemon runs `setvcpus`):
// the domain's own where it is a valid VM name, else "domain-UUID".
std::string VmNameOf(const DomainDefinition& def);

// The arguments after `coalesce` that run this definition (starting with "run").
std::vector<std::string> RunArguments(const DomainDefinition& def);

}  // namespace coalesce::daemon
