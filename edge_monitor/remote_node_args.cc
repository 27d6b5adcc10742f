#include "edge_monitor/remote_node_args.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dsm/link_spec.h"
#include "edge_monitor/guest_ranges.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/base/flag_parser.h"
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

namespace {

// A byte count of whole `unit`s, 1 to `max_units` of them.
FlagParser::Setter StoreUnits(uint64_t* out, uint64_t unit, uint64_t max_units, std::string what) {
  return [out, unit, max_units, what = std::move(what)](absl::string_view flag, const std::string& v) {
    uint64_t bytes = 0;
    if (absl::Status st = StoreUint64(&bytes, 1)(flag, v); !st.ok()) return st;
    if (bytes % unit != 0 || bytes / unit > max_units) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": '", v, "' is not ", what));
    }
    *out = bytes;
    return absl::OkStatus();
  };
}

// Text that `parse(text, flag)` accepts (its errors name the flag), kept as given.
template <typename Parse>
FlagParser::Setter StoreParsedText(std::string* out, Parse parse) {
  return [out, parse](absl::string_view flag, const std::string& v) -> absl::Status {
    if (absl::Status st = parse(v, std::string(flag)).status(); !st.ok()) return st;
    *out = v;
    return absl::OkStatus();
  };
}

}  // namespace

absl::StatusOr<RemoteNodeArgs> RemoteNodeArgs::Parse(const std::vector<std::string>& args) {
  RemoteNodeArgs out;
  std::string vcpus_arrive = "0";
  auto host_port = [](const std::string& v, const std::string& flag) { return ParseHostPort(v, flag); };
  FlagParser flags;
  flags.Value("--vm-id", StoreNonEmpty(&out.vm_id, "a VM id"))
      .Value("--memory", StoreUint64(&out.guest_memory_bytes, 1))
      .Value("--hotplug-memory", StoreUnits(&out.hotplug_memory_bytes, platform::kMemoryHotplugSlotSize,
                                            platform::kHotplugMaxSlots, "a multiple of 128 MiB up to 256 slots"))
      .Value("--lent-memory",
             StoreUnits(&out.lent_memory_bytes, 4096, UINT64_MAX / 4096, "a whole number of 4 KiB pages"))
      .Value("--vcpu-count", StoreUint32(&out.guest_vcpu_count, 1, kMaxVcpuCount))
      .Value("--vcpus",
             [&](absl::string_view, const std::string& v) -> absl::Status {
               if (v.empty()) return absl::OkStatus();  // a memory node: checked against --lent-memory below
               auto ids = ParseVcpuList(v);
               if (!ids.ok()) return absl::InvalidArgumentError(absl::StrCat("--vcpus: ", ids.status().message()));
               out.vcpu_ids = *std::move(ids);
               return absl::OkStatus();
             })
      .Value("--home", StoreParsedText(&out.home_address, host_port))
      .Value("--home-only-memory", StoreParsedText(&out.home_only_memory, ParseGuestRanges))
      .Value("--link", StoreParsedText(&out.link, dsm::ParseLinkSpec))
      .Value("--tsc-offset", StoreInt64(&out.tsc_offset))
      .Value("--cpu-model", StoreChoice(&out.cpu_model, {"host", "baseline"}))
      .Value("--node-id", StoreUint32(&out.node_id, 1, 63))
      .Value("--ready-fd", StoreFd(&out.ready_fd))
      .Value("--data-plane-key-fd", StoreFd(&out.data_plane_key_fd))
      .Value("--kvm-fd", StoreFd(&out.kvm_fd))
      .Value("--userfaultfd-device-fd", StoreFd(&out.userfaultfd_device_fd))
      .Value("--vcpus-arrive", StoreChoice(&vcpus_arrive, {"0", "1"}));
  for (const char* required :
       {"--vm-id", "--memory", "--vcpu-count", "--vcpus", "--home", "--ready-fd", "--data-plane-key-fd"}) {
    flags.Require(required);
  }
  if (absl::Status st = flags.Parse(args); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("remote-node: ", st.message()));
  }
  out.vcpus_arrive = vcpus_arrive == "1";
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
