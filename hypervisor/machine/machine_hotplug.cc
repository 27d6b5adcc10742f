// The machine's side of ACPI CPU hotplug (docs/HOTPLUG.md): `coalesce ctl setvcpus N`, and the plugging that
// `attach` does for vCPUs the guest has not seen. The guest's view lives in the CPU HotplugController; the vCPUs
// themselves exist from the start (every id has a KVM vCPU and a thread waiting for a SIPI where it is placed),
// so plugging one in is a word to the guest, which onlines it with INIT and SIPI like a CPU at boot.
#include <algorithm>
#include <chrono>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "devmodel/hotplug_controller.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/machine/machine.h"

namespace coalesce {
namespace {

// How long the guest gets to take a plug event (its ACPI scan runs at once on an idle guest) and to offline
// and eject a CPU (it migrates that CPU's tasks and timers first).
constexpr absl::Duration kInsertTimeout = absl::Seconds(10);
constexpr absl::Duration kEjectTimeout = absl::Seconds(30);

}  // namespace

double Machine::MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

absl::StatusOr<std::vector<uint32_t>> Machine::PlugVcpus(const std::vector<uint32_t>& vcpus,
                                                         std::optional<uint8_t> domain) {
  std::vector<uint32_t> plugged;
  for (uint32_t v : vcpus) {
    if (cpu_hotplug_->Present(v)) continue;
    // Its _PXM: the domain given (an attached edge's), else the one the boot SRAT gave it (a CPU an earlier
    // edge lent and gave back is home's or its boot edge's again).
    if (absl::Status st = cpu_hotplug_->SetDomain(v, domain ? *domain : BootDomainOf(v)); !st.ok()) return st;
    if (absl::Status st = cpu_hotplug_->Plug(v); !st.ok()) return st;
    plugged.push_back(v);
  }
  for (uint32_t v : plugged) {
    if (absl::Status st = cpu_hotplug_->AwaitInsertTaken(v, kInsertTimeout); !st.ok()) return st;
  }
  return plugged;
}

uint8_t Machine::BootDomainOf(uint32_t vcpu) const {
  const std::vector<NumaNode>& nodes = acpi_config_.numa.nodes;
  for (size_t d = 0; d < nodes.size(); ++d) {
    if (std::find(nodes[d].vcpus.begin(), nodes[d].vcpus.end(), vcpu) != nodes[d].vcpus.end()) {
      return static_cast<uint8_t>(d);
    }
  }
  return 0;
}

absl::StatusOr<std::vector<uint32_t>> Machine::UnplugVcpus(const std::vector<uint32_t>& vcpus) {
  std::vector<uint32_t> asked;
  // The guest is asked for all of them at once, then waited for.
  for (uint32_t v : vcpus) {
    if (!cpu_hotplug_->Present(v)) continue;
    if (absl::Status st = cpu_hotplug_->RequestUnplug(v); !st.ok()) return st;
    asked.push_back(v);
  }
  for (uint32_t v : asked) {
    if (absl::Status st = cpu_hotplug_->AwaitEjected(v, kEjectTimeout); !st.ok()) return st;
  }
  ForgetLent(asked);
  return asked;
}

void Machine::ForgetLent(const std::vector<uint32_t>& vcpus) {
  absl::MutexLock lock(&lent_mu_);
  std::erase_if(lent_vcpus_, [&vcpus](uint32_t v) { return std::find(vcpus.begin(), vcpus.end(), v) != vcpus.end(); });
}

std::string Machine::GiveBackLentCpus(const std::vector<uint32_t>& vcpus) {
  if (cpu_hotplug_ == nullptr) return "";
  std::vector<uint32_t> lent;
  {
    absl::MutexLock lock(&lent_mu_);
    for (uint32_t v : vcpus) {
      if (std::find(lent_vcpus_.begin(), lent_vcpus_.end(), v) != lent_vcpus_.end()) lent.push_back(v);
    }
  }
  if (lent.empty()) return "";
  absl::MutexLock giving_back(&give_back_mu_);  // a suspend under way finishes first; a later one is refused
  if (pause_->paused()) {
    return absl::StrFormat("; vCPUs %s, which it lent, stay present: the guest is paused (setvcpus gives them back)",
                           FormatVcpuList(lent));
  }
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<uint32_t>> gone = UnplugVcpus(lent);
  ForgetLent(lent);  // they are home now whatever the guest did: no edge lends them any more
  if (!gone.ok()) {
    return absl::StrFormat("; vCPUs %s, which it lent, stay present: %s", FormatVcpuList(lent), gone.status().message());
  }
  return absl::StrFormat("; vCPUs %s, which it lent, given back: the guest ejected them in %.1f ms", FormatVcpuList(lent),
                         MsSince(start));
}

std::string Machine::SetVcpusCommand(const std::vector<std::string>& words) {
  if (words.size() != 1) return "error: setvcpus takes one argument: the number of vCPUs the guest should have";
  if (cpu_hotplug_ == nullptr) {
    return absl::StrFormat("error: setvcpus: this guest cannot gain or lose CPUs (its %u vCPUs are all it may have: "
                           "start it with --max-vcpus N, docs/HOTPLUG.md)",
                           config_.vcpus);
  }
  if (!running_.load()) return "error: the VM is still starting";
  // The guest answers a plug or an eject request: it must run.
  if (std::string refused = RefuseWhilePaused("setvcpus"); !refused.empty()) return refused;
  uint32_t want = 0;
  if (!absl::SimpleAtoi(words[0], &want) || want == 0 || want > config_.vcpu_ids()) {
    return absl::StrFormat("error: setvcpus: '%s' is not a vCPU count between 1 and %u (--max-vcpus)", words[0],
                           config_.vcpu_ids());
  }
  const std::vector<uint32_t> present = cpu_hotplug_->PresentSlots();
  const auto start = std::chrono::steady_clock::now();
  if (want == present.size()) return absl::StrFormat("vm %s: %u vCPUs present already", config_.name, want);
  if (want > present.size()) {
    std::vector<uint32_t> to_plug;
    for (uint32_t v = 1; v < config_.vcpu_ids() && present.size() + to_plug.size() < want; ++v) {
      if (!std::binary_search(present.begin(), present.end(), v)) to_plug.push_back(v);
    }
    absl::StatusOr<std::vector<uint32_t>> plugged = PlugVcpus(to_plug);
    if (!plugged.ok()) return absl::StrFormat("error: setvcpus: %s", plugged.status().message());
    return absl::StrFormat(
        "vm %s: vCPUs %s plugged in; the guest took them in %.1f ms (a Linux guest adds them offline: "
        "echo 1 > /sys/devices/system/cpu/cpuN/online); %u vCPUs present",
        config_.name, FormatVcpuList(*plugged), MsSince(start), want);
  }
  // Fewer: the highest ids go, never vCPU 0.
  std::vector<uint32_t> to_remove(present.end() - static_cast<ptrdiff_t>(present.size() - want), present.end());
  if (absl::StatusOr<std::vector<uint32_t>> gone = UnplugVcpus(to_remove); !gone.ok()) {
    return absl::StrFormat("error: setvcpus: %s", gone.status().message());
  }
  return absl::StrFormat("vm %s: vCPUs %s unplugged: the guest offlined and ejected them in %.1f ms; %u vCPUs present",
                         config_.name, FormatVcpuList(to_remove), MsSince(start), want);
}

}  // namespace coalesce
