#include "edge_monitor/edge_agent_service.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "edge_monitor/host_request_validator.h"
#include "edge_monitor/size.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/base/log.h"

namespace coalesce {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

std::vector<uint32_t> IdsOf(const pb::HostVcpusRequest& request) {
  return std::vector<uint32_t>(request.vcpu_ids().begin(), request.vcpu_ids().end());
}

}  // namespace

EdgeAgentService::EdgeAgentService(Options options, std::unique_ptr<VmRuntimeFactory> factory)
    : options_(std::move(options)), factory_(std::move(factory)) {
  lease_thread_ = std::thread([this] { LeaseLoop(); });
}

EdgeAgentService::~EdgeAgentService() {
  StopAll();  // also ends the lease thread
  if (lease_thread_.joinable()) lease_thread_.join();
  absl::flat_hash_map<std::string, std::shared_ptr<VmRecord>> records;
  {
    absl::MutexLock lock(&mu_);
    // No RPC runs any more (the server is shut down before the service is destroyed), so nothing is starting.
    records.swap(vms_);
  }
}

bool EdgeAgentService::HoldsResources(const VmRecord& record) {
  if (record.starting || record.stopping) return true;
  return record.runtime != nullptr && record.runtime->Status().running;
}

pb::VmStatus EdgeAgentService::StatusOf(const VmRecord& record, absl::Time now) {
  pb::VmStatus status;
  status.set_vm_id(record.request.vm_id());
  *status.mutable_vcpu_ids() = record.request.vcpu_ids();
  status.set_guest_memory_bytes(record.request.guest_memory_bytes());
  const auto lease_left = [&] {
    return static_cast<uint32_t>(std::max<int64_t>(0, absl::ToInt64Milliseconds(record.lease_end - now)));
  };
  if (record.starting) {
    status.set_state(pb::VM_STATE_STARTING);
    status.set_detail("starting");
    status.set_lease_ms_left(lease_left());
    return status;
  }
  const HostedVmStatus runtime = record.runtime->Status();
  status.set_runtime_pid(runtime.pid);
  status.set_detail(record.lease_ended.empty() ? runtime.detail : absl::StrCat(record.lease_ended, ": ", runtime.detail));
  if (runtime.running) {
    status.set_state(record.stopping ? pb::VM_STATE_STOPPING : pb::VM_STATE_RUNNING);
    if (!record.stopping) status.set_lease_ms_left(lease_left());
  } else {
    status.set_state(runtime.stopped ? pb::VM_STATE_STOPPED : pb::VM_STATE_EXITED);
    status.set_exit_code(runtime.exit_code);
  }
  return status;
}

pb::Capacity EdgeAgentService::CapacitySnapshot() const {
  pb::Capacity capacity;
  capacity.set_total_vcpus(options_.capacity.vcpus);
  capacity.set_total_memory_bytes(options_.capacity.memory_bytes);
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, record] : vms_) {
      if (!HoldsResources(*record)) continue;
      capacity.set_reserved_vcpus(capacity.reserved_vcpus() + static_cast<uint32_t>(record->request.vcpu_ids_size()));
      capacity.set_reserved_memory_bytes(capacity.reserved_memory_bytes() + MemoryHeld(record->request));
      capacity.set_running_vms(capacity.running_vms() + 1);
    }
  }
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  capacity.set_host_cpus(cpus > 0 ? static_cast<uint32_t>(cpus) : 0);
  double load[1] = {0};
  if (::getloadavg(load, 1) == 1) capacity.set_load_average_1m(load[0]);
  if (const HostConditions now = ReadHostConditions(options_.power_supply_dir); now.battery) {
    capacity.set_battery_percent(now.battery->percent);
    capacity.set_on_battery(now.battery->discharging);
  }
  return capacity;
}

grpc::Status EdgeAgentService::GetCapacity(grpc::ServerContext*, const pb::GetCapacityRequest*, pb::Capacity* reply) {
  *reply = CapacitySnapshot();
  return grpc::Status::OK;
}

grpc::Status EdgeAgentService::HostVcpus(grpc::ServerContext* context, const pb::HostVcpusRequest* request,
                                         pb::VmStatus* reply) {
  if (absl::Status st = ValidateHostRequest(*request); !st.ok()) {
    LOG_WARN("HostVcpus from %s refused: bad request: %s", context->peer(), std::string(st.message()));
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("bad request: ", st.message()));
  }
  // The host's own state against its limits and the user's: checked before anything is reserved.
  if (absl::Status st = CheckHostConditions(ReadHostConditions(options_.power_supply_dir), options_.limits,
                                            request->max_edge_load());
      !st.ok()) {
    LOG_WARN("HostVcpus VM '%s' from %s refused: %s", request->vm_id(), context->peer(), std::string(st.message()));
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, std::string(st.message()));
  }
  const std::string& vm_id = request->vm_id();
  const uint32_t want_vcpus = static_cast<uint32_t>(request->vcpu_ids_size());
  const uint64_t want_memory = MemoryHeld(*request);
  auto record = std::make_shared<VmRecord>();
  record->request = *request;
  record->lease_end = absl::Now() + options_.start_timeout + Granted(request->lease_seconds());
  std::shared_ptr<VmRecord> replaced;  // an exited record with the same id, destroyed outside the lock
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the edge agent is shutting down");
    if (auto it = vms_.find(vm_id); it != vms_.end()) {
      if (HoldsResources(*it->second)) {
        return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                            absl::StrCat("duplicate VM id: VM '", vm_id, "' is already hosted here (",
                                         pb::VmState_Name(StatusOf(*it->second).state()), ")"));
      }
      replaced = std::move(it->second);
      vms_.erase(it);
    }
    uint32_t used_vcpus = 0;
    uint64_t used_memory = 0;
    for (const auto& [id, other] : vms_) {
      if (!HoldsResources(*other)) continue;
      used_vcpus += static_cast<uint32_t>(other->request.vcpu_ids_size());
      used_memory += MemoryHeld(other->request);
    }
    std::vector<std::string> over;
    const uint32_t free_vcpus = options_.capacity.vcpus - std::min(used_vcpus, options_.capacity.vcpus);
    const uint64_t free_memory = options_.capacity.memory_bytes - std::min(used_memory, options_.capacity.memory_bytes);
    if (want_vcpus > free_vcpus) {
      over.push_back(absl::StrCat(want_vcpus, want_vcpus == 1 ? " vCPU" : " vCPUs", " requested, ", free_vcpus, " of ", options_.capacity.vcpus,
                                  " free"));
    }
    if (want_memory > free_memory) {
      over.push_back(absl::StrCat("memory ", FormatSize(want_memory), " requested, ", FormatSize(free_memory), " of ",
                                  FormatSize(options_.capacity.memory_bytes), " free"));
    }
    if (!over.empty()) {
      const std::string why = absl::StrCat("over capacity: ", absl::StrJoin(over, "; "));
      LOG_WARN("HostVcpus VM '%s' from %s refused: %s", vm_id, context->peer(), why);
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, why);
    }
    vms_.emplace(vm_id, record);
  }
  replaced.reset();

  LOG_INFO("VM '%s': hosting vCPUs %s, %s of guest memory, home %s, lease %s", vm_id,
           FormatVcpuList(IdsOf(*request)), FormatSize(want_memory), request->home_data_plane_address(),
           absl::FormatDuration(Granted(request->lease_seconds())));
  absl::Time deadline = absl::Now() + options_.start_timeout;
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    deadline = std::min(deadline, absl::FromChrono(context->deadline()));
  }
  absl::StatusOr<std::unique_ptr<HostedVm>> runtime = factory_->Start(*request, deadline);

  std::unique_ptr<HostedVm> abandoned;
  grpc::Status result = grpc::Status::OK;
  {
    absl::MutexLock lock(&mu_);
    if (!runtime.ok()) {
      vms_.erase(vm_id);
      LOG_WARN("VM '%s': runtime failed to start: %s", vm_id, std::string(runtime.status().message()));
      return ToGrpc(runtime.status());
    }
    if (context->IsCancelled() || shutting_down_) {
      // The home node gave up (deadline, disconnect) or the agent is going away: nobody will use this runtime.
      vms_.erase(vm_id);
      abandoned = *std::move(runtime);
      result = grpc::Status(grpc::StatusCode::CANCELLED,
                            shutting_down_ ? "the edge agent is shutting down"
                                           : "the request was cancelled before the runtime was ready");
    } else {
      record->runtime = *std::move(runtime);
      record->starting = false;
      record->lease_end = absl::Now() + Granted(request->lease_seconds());  // from the home's answer on
      *reply = StatusOf(*record);
    }
  }
  if (abandoned != nullptr) {
    LOG_WARN("VM '%s': %s; stopping its runtime", vm_id, result.error_message());
    abandoned->Stop(options_.default_stop_grace, RuntimeStopReason::kAbandoned);
  }
  return result;
}

grpc::Status EdgeAgentService::StopVm(grpc::ServerContext*, const pb::StopVmRequest* request, pb::VmStatus* reply) {
  if (absl::Status st = ValidateVmId(request->vm_id()); !st.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("bad request: ", st.message()));
  }
  std::shared_ptr<VmRecord> record;
  {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(request->vm_id());
    if (it == vms_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("VM '", request->vm_id(), "' is not hosted here"));
    }
    if (it->second->starting) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("VM '", request->vm_id(), "' is still starting; retry"));
    }
    if (it->second->stopping) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("VM '", request->vm_id(), "' is already being stopped"));
    }
    record = it->second;
    record->stopping = true;
  }
  const absl::Duration grace =
      request->grace_ms() > 0 ? absl::Milliseconds(request->grace_ms()) : options_.default_stop_grace;
  record->runtime->Stop(std::min(grace, absl::Seconds(60)), RuntimeStopReason::kStopRequested);
  {
    absl::MutexLock lock(&mu_);
    if (auto it = vms_.find(request->vm_id()); it != vms_.end() && it->second == record) vms_.erase(it);
    record->stopping = false;
    *reply = StatusOf(*record);
  }
  LOG_INFO("VM '%s': stopped (%s)", request->vm_id(), reply->detail());
  return grpc::Status::OK;
}

grpc::Status EdgeAgentService::GetVmState(grpc::ServerContext*, const pb::GetVmStateRequest* request,
                                          pb::VmStatus* reply) {
  absl::MutexLock lock(&mu_);
  auto it = vms_.find(request->vm_id());
  if (it == vms_.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("VM '", request->vm_id(), "' is not hosted here"));
  }
  *reply = StatusOf(*it->second);
  return grpc::Status::OK;
}

void EdgeAgentService::StopAll() {
  std::vector<std::shared_ptr<VmRecord>> to_stop;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (auto& [id, record] : vms_) {
      if (record->starting || record->stopping || !record->lease_ended.empty()) continue;
      record->stopping = true;
      to_stop.push_back(record);
    }
  }
  // In parallel: each runtime gets its full grace period, not a share of one.
  std::vector<std::thread> stoppers;
  for (auto& record : to_stop) {
    stoppers.emplace_back(
        [this, record] { record->runtime->Stop(options_.departure_grace, RuntimeStopReason::kAgentShutdown); });
  }
  for (auto& t : stoppers) t.join();
  absl::MutexLock lock(&mu_);
  for (auto& record : to_stop) {
    record->stopping = false;
    if (auto it = vms_.find(record->request.vm_id()); it != vms_.end() && it->second == record) vms_.erase(it);
  }
}

bool EdgeAgentService::LeaseLive(const VmRecord& record) {
  return !record.starting && !record.stopping && record.lease_ended.empty() && record.runtime->Status().running;
}

absl::Duration EdgeAgentService::Granted(uint32_t lease_seconds) const {
  if (lease_seconds == 0) return options_.max_lease;
  return std::min(absl::Seconds(lease_seconds), options_.max_lease);
}

grpc::Status EdgeAgentService::RenewLease(grpc::ServerContext*, const pb::RenewLeaseRequest* request,
                                          pb::VmStatus* reply) {
  if (absl::Status st = ValidateVmId(request->vm_id()); !st.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("bad request: ", st.message()));
  }
  absl::MutexLock lock(&mu_);
  auto it = vms_.find(request->vm_id());
  if (it == vms_.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("VM '", request->vm_id(), "' is not hosted here"));
  }
  VmRecord& record = *it->second;
  std::string refused;
  if (!record.lease_ended.empty()) {
    refused = record.lease_ended;
  } else if (record.starting) {
    refused = "it is still starting";
  } else if (record.stopping) {
    refused = "it is being stopped";
  } else if (!record.runtime->Status().running) {
    refused = "its runtime has ended";
  }
  if (!refused.empty()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("VM '", request->vm_id(), "': no lease to renew: ", refused));
  }
  record.lease_end = absl::Now() + Granted(request->lease_seconds());
  *reply = StatusOf(record);
  return grpc::Status::OK;
}

void EdgeAgentService::EndLease(const std::shared_ptr<VmRecord>& record, RuntimeStopReason why) {
  LOG_WARN("VM '%s': %s: its runtime leaves (vCPUs and pages go home)", record->request.vm_id(), record->lease_ended);
  record->runtime->Stop(options_.departure_grace, why);
  absl::MutexLock lock(&mu_);
  record->stopping = false;
}

absl::StatusOr<pb::VmStatus> EdgeAgentService::Revoke(const std::string& vm_id) {
  std::shared_ptr<VmRecord> record;
  {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(vm_id);
    if (it == vms_.end()) return absl::NotFoundError(absl::StrCat("VM '", vm_id, "' is not hosted here"));
    record = it->second;
    if (!record->lease_ended.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("VM '", vm_id, "': its lease has ended already (",
                                                        record->lease_ended, ")"));
    }
    if (!LeaseLive(*record)) {
      return absl::FailedPreconditionError(absl::StrCat("VM '", vm_id, "' is not running (",
                                                        pb::VmState_Name(StatusOf(*record).state()), ")"));
    }
    record->stopping = true;
    record->lease_ended = "lease revoked by the edge's operator";
  }
  EndLease(record, RuntimeStopReason::kLeaseRevoked);
  absl::MutexLock lock(&mu_);
  return StatusOf(*record);
}

void EdgeAgentService::LeaseLoop() {
  while (true) {
    std::vector<std::shared_ptr<VmRecord>> expired;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&shutting_down_), options_.lease_check_interval);
      if (shutting_down_) return;  // StopAll sends every runtime away
      const absl::Time now = absl::Now();
      for (auto& [id, record] : vms_) {
        // A runtime that ended on its own, or is already on its way out, has nothing to send away.
        if (!LeaseLive(*record) || now < record->lease_end) continue;
        record->stopping = true;
        record->lease_ended = "lease expired (not renewed in time)";
        expired.push_back(record);
      }
    }
    // In parallel, as StopAll: each runtime gets its whole departure grace.
    std::vector<std::thread> enders;
    for (auto& record : expired) {
      enders.emplace_back([this, record] { EndLease(record, RuntimeStopReason::kLeaseExpired); });
    }
    for (auto& t : enders) t.join();
  }
}

std::string EdgeAgentService::LeasesReport() const {
  absl::MutexLock lock(&mu_);
  if (vms_.empty()) return "no VMs hosted";
  std::vector<std::string> lines;
  const absl::Time now = absl::Now();
  for (const auto& [id, record] : vms_) {
    const pb::VmStatus st = StatusOf(*record, now);
    // Why a lease ended is in the detail already.
    const std::string lease =
        st.lease_ms_left() > 0 ? absl::StrFormat("lease %.1f s left", st.lease_ms_left() / 1000.0) : "no lease";
    lines.push_back(absl::StrFormat("VM %s: %s, vCPUs %s, %s, %s (%s)", id, pb::VmState_Name(st.state()),
                                    FormatVcpuList(IdsOf(record->request)), FormatSize(st.guest_memory_bytes()),
                                    lease, st.detail()));
  }
  std::sort(lines.begin(), lines.end());
  return absl::StrJoin(lines, "\n");
}

}  // namespace coalesce
