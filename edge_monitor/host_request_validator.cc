#include "edge_monitor/host_request_validator.h"

#include <cctype>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "dsm/link_spec.h"
#include "edge_monitor/guest_ranges.h"
#include "edge_monitor/host_port.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/base/platform.h"

namespace coalesce {

absl::Status ValidateVmId(const std::string& vm_id) {
  constexpr size_t kMaxVmIdLength = 64;
  if (vm_id.empty()) return absl::InvalidArgumentError("vm_id is empty");
  if (vm_id.size() > kMaxVmIdLength) {
    return absl::InvalidArgumentError(absl::StrCat("vm_id is longer than ", kMaxVmIdLength, " characters"));
  }
  for (char c : vm_id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError("vm_id may only contain letters, digits, '.', '_' and '-'");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateHostRequest(const pb::HostVcpusRequest& request) {
  if (absl::Status st = ValidateVmId(request.vm_id()); !st.ok()) return st;
  if (request.guest_memory_bytes() == 0) return absl::InvalidArgumentError("guest_memory_bytes is 0");
  if (request.guest_memory_bytes() % 4096 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("guest_memory_bytes ", request.guest_memory_bytes(), " is not a multiple of 4096"));
  }
  if (request.guest_vcpu_count() == 0 || request.guest_vcpu_count() > kMaxVcpuCount) {
    return absl::InvalidArgumentError(
        absl::StrCat("guest_vcpu_count ", request.guest_vcpu_count(), " is out of range (1..", kMaxVcpuCount, ")"));
  }
  const uint64_t slot = platform::kMemoryHotplugSlotSize;
  if (request.hotplug_memory_bytes() % slot != 0 ||
      request.hotplug_memory_bytes() / slot > platform::kHotplugMaxSlots) {
    return absl::InvalidArgumentError(absl::StrCat("hotplug_memory_bytes ", request.hotplug_memory_bytes(),
                                                   " is not whole 128 MiB slots, at most ",
                                                   platform::kHotplugMaxSlots));
  }
  if (request.lent_memory_bytes() % 4096 != 0 ||
      request.lent_memory_bytes() > request.guest_memory_bytes() + request.hotplug_memory_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("lent_memory_bytes ", request.lent_memory_bytes(),
                                                   " is not whole pages within the guest's memory"));
  }
  if (request.vcpu_ids().empty() && request.lent_memory_bytes() == 0) {
    return absl::InvalidArgumentError("vcpu_ids is empty and no lent_memory_bytes: a node runs vCPUs or lends memory");
  }
  if (!request.vcpu_ids().empty() && request.lent_memory_bytes() != 0) {
    return absl::InvalidArgumentError("lent_memory_bytes is for memory nodes, which run no vCPUs");
  }
  absl::flat_hash_set<uint32_t> seen;
  for (uint32_t id : request.vcpu_ids()) {
    if (id >= request.guest_vcpu_count()) {
      return absl::InvalidArgumentError(
          absl::StrCat("vcpu_ids: vCPU ", id, " does not exist (guest_vcpu_count is ", request.guest_vcpu_count(), ")"));
    }
    if (!seen.insert(id).second) return absl::InvalidArgumentError(absl::StrCat("vcpu_ids: vCPU ", id, " is listed twice"));
  }
  // node_id 0 means 1 (the first edge); the home node is 0 and the data plane numbers nodes below 64.
  if (request.node_id() > 63) {
    return absl::InvalidArgumentError(
        absl::StrCat("node_id ", request.node_id(), " is out of range (1..63; 0 means 1)"));
  }
  if (!request.cpu_model().empty() && request.cpu_model() != "host" && request.cpu_model() != "baseline") {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu_model '", request.cpu_model(), "' is not one of host, baseline"));
  }
  if (auto hp = ParseHostPort(request.home_data_plane_address(), "home_data_plane_address"); !hp.ok()) {
    return hp.status();
  }
  if (!request.home_only_memory().empty()) {
    if (auto r = ParseGuestRanges(request.home_only_memory(), "home_only_memory"); !r.ok()) return r.status();
  }
  if (!request.link_emulation().empty()) {
    if (auto l = dsm::ParseLinkSpec(request.link_emulation(), "link_emulation"); !l.ok()) return l.status();
  }
  // Every VM's data plane is encrypted: no key, no runtime (a plaintext runtime could not talk to home anyway).
  if (request.data_plane_key().size() != kDataPlaneKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("data_plane_key is ", request.data_plane_key().size(),
                                                   " bytes; the VM's data-plane key is ", kDataPlaneKeyBytes));
  }
  return absl::OkStatus();
}

uint64_t MemoryHeld(const pb::HostVcpusRequest& request) {
  return request.vcpu_ids().empty() ? request.lent_memory_bytes()
                                    : request.guest_memory_bytes() + request.hotplug_memory_bytes();
}

}  // namespace coalesce
