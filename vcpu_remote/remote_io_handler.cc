#include "vcpu_remote/remote_io_handler.h"

#include <algorithm>

#include "hypervisor/vcpu/exit_status.h"

namespace coalesce {

void RemoteIoHandler::Read(uint32_t vcpu, node_msg::IoKind kind, uint64_t addr, std::span<uint8_t> data) {
  auto r = link_->ForwardIo(vcpu, kind, addr, static_cast<uint8_t>(data.size()), {}, timeout_);
  if (!r.ok() || r->size() != data.size()) {
    std::fill(data.begin(), data.end(), 0xff);
    if (!r.ok() && !absl::IsCancelled(r.status())) {
      run_control_->Stop(exit_status::kHostFailure, std::string(r.status().message()));
    }
    return;
  }
  std::copy(r->begin(), r->end(), data.begin());
}

void RemoteIoHandler::Write(uint32_t vcpu, node_msg::IoKind kind, uint64_t addr, std::span<const uint8_t> data) {
  auto r = link_->ForwardIo(vcpu, kind, addr, static_cast<uint8_t>(data.size()), data, timeout_);
  if (!r.ok() && !absl::IsCancelled(r.status())) {
    run_control_->Stop(exit_status::kHostFailure, std::string(r.status().message()));
  }
}

}  // namespace coalesce
