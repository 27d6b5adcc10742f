#include "edge_monitor/host_request_builder.h"

#include "absl/strings/str_cat.h"
#include "edge_monitor/host_request_validator.h"
#include "edge_monitor/size.h"

namespace coalesce {

absl::StatusOr<pb::HostVcpusRequest> MakeHostVcpusRequest(const pb::Profile& profile, int edge_index,
                                                          const std::string& vm_id,
                                                          const std::string& home_data_plane_address,
                                                          uint32_t node_id) {
  if (edge_index < 0 || edge_index >= profile.edge_size()) {
    return absl::InvalidArgumentError(absl::StrCat("profile has no edge[", edge_index, "]"));
  }
  auto memory = ParseSize(profile.guest().memory(), "guest.memory");
  if (!memory.ok()) return memory.status();
  pb::HostVcpusRequest request;
  request.set_vm_id(vm_id);
  request.set_guest_memory_bytes(*memory);
  request.set_guest_vcpu_count(profile.guest().vcpus());
  *request.mutable_vcpu_ids() = profile.edge(edge_index).vcpus();
  request.set_home_data_plane_address(home_data_plane_address);
  request.set_node_id(node_id);
  if (absl::Status st = ValidateHostRequest(request); !st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request for edge ", profile.edge(edge_index).address(), ": ", st.message()));
  }
  return request;
}

}  // namespace coalesce
