// The argv contract between the edge agent and the remote vCPU runtime it starts for each VM.
//
//   <exe> remote-node --vm-id=ID --memory=BYTES --vcpu-count=N --vcpus=LIST --home=HOST:PORT
//                     --tsc-offset=CYCLES --node-id=N --cpu-model=M --ready-fd=FD --data-plane-key-fd=FD
//                     [--home-only-memory=RANGES] [--link=SPEC] [--vcpus-arrive=1] [--lent-memory=BYTES]
//                     [--kvm-fd=FD] [--userfaultfd-device-fd=FD]
//
// <exe> is the agent's own binary (/proc/self/exe), so the lead's main() dispatches the `remote-node` subcommand to
// the runtime with the arguments after it. LIST uses the --edge syntax ("2,3", "1,3-5"); it is empty for a memory
// node, which runs no vCPUs and holds the pages the home spills to it (--lent-memory). The runtime:
//  - reads the VM's 32-byte data-plane secret from the --data-plane-key-fd pipe (the agent writes it and closes
//    its end: exactly 32 bytes, then EOF) and closes it; a secret is never put on argv, where ps shows it;
//  - writes one byte to FD once its vCPUs are created and it is connected to the home node, then closes FD;
//    the agent answers HostVcpus only then (exiting or closing FD earlier fails the request);
//  - exits 0 when the VM ends normally (guest power-off), non-zero on any error, with the reason on stderr;
//  - on SIGTERM, stops its vCPUs and exits promptly; the agent sends SIGKILL after a grace period;
//  - is killed (SIGKILL) if the agent dies (PR_SET_PDEATHSIG) and must not depend on any other agent state;
//  - builds its VM on the /dev/kvm the agent opened (--kvm-fd) and creates its userfaultfd through the agent's
//    /dev/userfaultfd (--userfaultfd-device-fd) when given them: a runtime in a user namespace of its own cannot
//    open either device itself. Without them it opens /dev/kvm and calls userfaultfd(2) itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace coalesce {

struct RemoteNodeArgs {
  std::string vm_id;
  uint64_t guest_memory_bytes = 0;
  uint32_t guest_vcpu_count = 0;
  std::vector<uint32_t> vcpu_ids;
  std::string home_address;  // The home node's data plane, host:port.
  int64_t tsc_offset = 0;
  uint32_t node_id = 1;      // The runtime's node id in the VM (the home is 0); --node-id, default 1.
  std::string cpu_model = "baseline";  // --cpu-model=host|baseline, as the home node decided.
  int ready_fd = -1;
  int data_plane_key_fd = -1;
  std::string home_only_memory;  // --home-only-memory=RANGES (optional): no memslot there, accesses forwarded
  std::string link;              // --link=SPEC (optional): emulated latency/jitter/bandwidth on its data-plane links
  bool vcpus_arrive = false;     // --vcpus-arrive=1: the vCPUs run elsewhere now and are moved here (ctl attach)
  uint64_t hotplug_memory_bytes = 0;  // --hotplug-memory=BYTES (optional): the guest's hotplug area, mapped too
  uint64_t lent_memory_bytes = 0;  // --lent-memory=BYTES: a memory node (--vcpus= empty) holding at most this much
  int kvm_fd = -1;                 // --kvm-fd=FD: an open /dev/kvm (optional)
  int userfaultfd_device_fd = -1;  // --userfaultfd-device-fd=FD: an open /dev/userfaultfd (optional)

  // The flags (everything after "remote-node").
  std::vector<std::string> ToArgs() const;

  // Parses the flags after "remote-node". Every flag except --tsc-offset, --node-id and --cpu-model is required;
  // unknown flags are errors.
  static absl::StatusOr<RemoteNodeArgs> Parse(const std::vector<std::string>& args);
};

}  // namespace coalesce
