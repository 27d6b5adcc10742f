// The machine's side of pausing the guest (docs/COALESCENCE.md "Pausing the guest"): `coalesce ctl suspend` and
// `resume`, which virsh suspend / resume reach through the daemon. VmPause holds and releases the vCPUs on every
// node; the machine answers with what it did and refuses what a paused guest cannot do.
#include "absl/strings/str_format.h"
#include "hypervisor/machine/coalescence_home.h"
#include "hypervisor/machine/machine.h"

namespace coalesce {
namespace {

// A vCPU reaches its gate at its next exit (a kick forces one at once); an edge answers over one round trip.
constexpr absl::Duration kPauseTimeout = absl::Seconds(10);

std::string Figures(const VmPause::Result& r) {
  return absl::StrFormat("%u vCPUs at home, %u on %u edge node(s), in %.3f ms", r.vcpus_home, r.vcpus_edges, r.edges,
                         absl::ToDoubleMilliseconds(r.took));
}

}  // namespace

std::vector<uint16_t> Machine::LiveEdges() const {
  std::vector<uint16_t> nodes;
  if (!home_) return nodes;
  for (size_t n = 1; n <= home_->edge_count(); ++n) {
    if (!home_->Released(static_cast<uint16_t>(n))) nodes.push_back(static_cast<uint16_t>(n));
  }
  return nodes;
}

std::string Machine::RefuseWhilePaused(const char* verb) const {
  if (!pause_->paused()) return "";
  return absl::StrFormat("error: %s: the guest is paused (coalesce ctl resume first)", verb);
}

std::string Machine::SuspendCommand(const std::vector<std::string>& words) {
  if (!words.empty()) return "error: suspend takes no arguments";
  if (!running_.load()) return "error: the VM is still starting";
  // A departing edge's CPUs being given back need the guest running to eject them.
  if (!give_back_mu_.TryLock()) {
    return "error: suspend: an edge is leaving and the guest is giving back the CPUs it lent; try again shortly";
  }
  absl::StatusOr<VmPause::Result> done = pause_->Pause(kPauseTimeout);
  give_back_mu_.Unlock();
  if (!done.ok()) return absl::StrFormat("error: suspend: %s", done.status().message());
  return absl::StrFormat("vm %s: paused: %s", config_.name, Figures(*done));
}

std::string Machine::ResumeCommand(const std::vector<std::string>& words) {
  if (!words.empty()) return "error: resume takes no arguments";
  const absl::Duration was_paused = pause_->paused_for();
  absl::StatusOr<VmPause::Result> done = pause_->Resume(kPauseTimeout);
  if (!done.ok()) return absl::StrFormat("error: resume: %s", done.status().message());
  return absl::StrFormat("vm %s: running again after %.3f s paused: %s", config_.name,
                         absl::ToDoubleSeconds(was_paused), Figures(*done));
}

}  // namespace coalesce
