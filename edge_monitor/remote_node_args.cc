#include "edge_monitor/remote_node_args.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dsm/link_spec.h"
#include "edge_monitor/guest_ranges.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/base/platform.h"

namespace coalesce {

std::vector<std::string> RemoteNodeArgs::ToArgs() const {
  std::vector<std::string> out = {
      absl::StrCat("--vm-id=", vm_id),
      absl::StrCat("--memory=", guest_memory_bytes),
      absl::StrCat("--vcpu-count=", guest_vcpu_count),
      absl::StrCat("--vcpus=", absl::StrJoin(vcpu_ids, ",")),
      absl::StrCat("--home=", home_address),
      absl::StrCat("--tsc-offset=", tsc_offset),
      absl::StrCat("--node-id=", node_id),
      absl::StrCat("--cpu-model=", cpu_model),
      absl::StrCat("--ready-fd=", ready_fd),
      absl::StrCat("--data-plane-key-fd=", data_plane_key_fd),
  };
  if (!home_only_memory.empty()) out.push_back(absl::StrCat("--home-only-memory=", home_only_memory));
  if (!link.empty()) out.push_back(absl::StrCat("--link=", link));
  if (vcpus_arrive) out.push_back("--vcpus-arrive=1");
  if (lent_memory_bytes != 0) out.push_back(absl::StrCat("--lent-memory=", lent_memory_bytes));
  if (hotplug_memory_bytes != 0) out.push_back(absl::StrCat("--hotplug-memory=", hotplug_memory_bytes));
  if (kvm_fd >= 0) out.push_back(absl::StrCat("--kvm-fd=", kvm_fd));
  if (userfaultfd_device_fd >= 0) out.push_back(absl::StrCat("--userfaultfd-device-fd=", userfaultfd_device_fd));
  return out;
}

absl::StatusOr<RemoteNodeArgs> RemoteNodeArgs::Parse(const std::vector<std::string>& args) {
  RemoteNodeArgs out;
  bool have_id = false, have_memory = false, have_count = false, have_vcpus = false, have_home = false,
       have_ready = false, have_key = false;
  auto bad = [](const std::string& arg, std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("remote-node: '", arg, "': ", std::string(why)));
  };
  for (const std::string& arg : args) {
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) return bad(arg, "expected --flag=value");
    const std::string name = arg.substr(2, eq - 2);
    const std::string value = arg.substr(eq + 1);
    if (name == "vm-id") {
      if (value.empty()) return bad(arg, "empty VM id");
      out.vm_id = value;
      have_id = true;
    } else if (name == "memory") {
      if (!absl::SimpleAtoi(value, &out.guest_memory_bytes) || out.guest_memory_bytes == 0) {
        return bad(arg, "not a positive byte count");
      }
      have_memory = true;
    } else if (name == "hotplug-memory") {
      if (!absl::SimpleAtoi(value, &out.hotplug_memory_bytes) || out.hotplug_memory_bytes == 0 ||
          out.hotplug_memory_bytes % platform::kMemoryHotplugSlotSize != 0 ||
          out.hotplug_memory_bytes / platform::kMemoryHotplugSlotSize > platform::kHotplugMaxSlots) {
        return bad(arg, "not a positive multiple of 128 MiB up to 256 slots");
      }
    } else if (name == "vcpu-count") {
      if (!absl::SimpleAtoi(value, &out.guest_vcpu_count) || out.guest_vcpu_count == 0 ||
          out.guest_vcpu_count > kMaxVcpuCount) {
        return bad(arg, absl::StrCat("not a vCPU count 1..", kMaxVcpuCount));
      }
      have_count = true;
    } else if (name == "vcpus") {
      have_vcpus = true;
      if (value.empty()) continue;  // a memory node: checked against --lent-memory below
      auto ids = ParseVcpuList(value);
      if (!ids.ok()) return bad(arg, std::string(ids.status().message()));
      out.vcpu_ids = *std::move(ids);
    } else if (name == "home") {
      if (auto hp = ParseHostPort(value, "home"); !hp.ok()) return bad(arg, std::string(hp.status().message()));
      out.home_address = value;
      have_home = true;
    } else if (name == "tsc-offset") {
      if (!absl::SimpleAtoi(value, &out.tsc_offset)) return bad(arg, "not an integer");
    } else if (name == "cpu-model") {
      if (value != "host" && value != "baseline") return bad(arg, "expected host or baseline");
      out.cpu_model = value;
    } else if (name == "node-id") {
      if (!absl::SimpleAtoi(value, &out.node_id) || out.node_id == 0 || out.node_id >= 64) {
        return bad(arg, "not a node id between 1 and 63");
      }
    } else if (name == "ready-fd") {
      if (!absl::SimpleAtoi(value, &out.ready_fd) || out.ready_fd < 0) return bad(arg, "not a file descriptor");
      have_ready = true;
    } else if (name == "home-only-memory") {
      if (auto r = ParseGuestRanges(value, "--home-only-memory"); !r.ok()) return bad(arg, std::string(r.status().message()));
      out.home_only_memory = value;
    } else if (name == "link") {
      if (auto l = dsm::ParseLinkSpec(value, "--link"); !l.ok()) return bad(arg, std::string(l.status().message()));
      out.link = value;
    } else if (name == "lent-memory") {
      if (!absl::SimpleAtoi(value, &out.lent_memory_bytes) || out.lent_memory_bytes == 0 ||
          out.lent_memory_bytes % 4096 != 0) {
        return bad(arg, "not a positive whole number of 4 KiB pages");
      }
    } else if (name == "vcpus-arrive") {
      if (value != "0" && value != "1") return bad(arg, "expected 0 or 1");
      out.vcpus_arrive = value == "1";
    } else if (name == "kvm-fd") {
      if (!absl::SimpleAtoi(value, &out.kvm_fd) || out.kvm_fd < 0) return bad(arg, "not a file descriptor");
    } else if (name == "userfaultfd-device-fd") {
      if (!absl::SimpleAtoi(value, &out.userfaultfd_device_fd) || out.userfaultfd_device_fd < 0) {
        return bad(arg, "not a file descriptor");
      }
    } else if (name == "data-plane-key-fd") {
      if (!absl::SimpleAtoi(value, &out.data_plane_key_fd) || out.data_plane_key_fd < 0) {
        return bad(arg, "not a file descriptor");
      }
      have_key = true;
    } else {
      return bad(arg, "unknown flag");
    }
  }
  std::vector<std::string> missing;
  if (!have_id) missing.push_back("--vm-id");
  if (!have_memory) missing.push_back("--memory");
  if (!have_count) missing.push_back("--vcpu-count");
  if (!have_vcpus) missing.push_back("--vcpus");
  if (!have_home) missing.push_back("--home");
  if (!have_ready) missing.push_back("--ready-fd");
  if (!have_key) missing.push_back("--data-plane-key-fd");
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("remote-node: missing ", absl::StrJoin(missing, ", ")));
  }
  if (out.vcpu_ids.empty() != (out.lent_memory_bytes != 0)) {
    return absl::InvalidArgumentError(
        "remote-node: a node runs vCPUs (--vcpus=LIST) or lends memory (--vcpus= and --lent-memory=BYTES)");
  }
  for (uint32_t id : out.vcpu_ids) {
    if (id >= out.guest_vcpu_count) {
      return absl::InvalidArgumentError(
          absl::StrCat("remote-node: vCPU ", id, " is not below --vcpu-count=", out.guest_vcpu_count));
    }
  }
  return out;
}

}  // namespace coalesce
