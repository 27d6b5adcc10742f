// The daemon's domains: definitions persisted as NAME.xml in the state directory, and the guests running them
// as supervised `coalesce run` processes (GuestProcess). Running guests outlive the daemon: each has a record
// (run/NAME.pid: pid, start time, id) from which a restarted daemon finds it again, or reports it lost.
//
// States and reasons are libvirt's (virDomainState and its reason enums), so the RPC layer passes them on.
// Thread safety: every public method may be called from any client thread. Lock order: mu_ only; a
// GuestProcess is never destroyed (its watcher joined) or waited for while mu_ is held, because its watcher
// takes mu_ to report the end.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/daemon/domain_xml.h"
#include "hypervisor/daemon/guest_process.h"

namespace coalesce::daemon {

enum DomainState : int32_t {
  kStateNone = 0,
  kStateRunning = 1,
  kStatePaused = 3,
  kStateShutdown = 4,  // being shut down
  kStateShutoff = 5,
  kStateCrashed = 6,
};
// Reasons, per state (libvirt's virDomain<State>Reason values).
enum : int32_t {
  kRunningBooted = 1,
  kRunningUnpaused = 5,
  kPausedUser = 1,
  kShutdownUser = 1,
  kShutoffUnknown = 0,
  kShutoffShutdown = 1,
  kShutoffDestroyed = 2,
  kShutoffCrashed = 3,
  kShutoffFailed = 6,
  kShutoffDaemon = 8,
};

struct DomainView {
  DomainDefinition def;       // what runs now (while active), else the definition
  DomainDefinition next_def;  // the definition the next start uses (a redefinition while running)
  int32_t state = kStateShutoff;
  int32_t reason = kShutoffUnknown;
  int id = -1;  // -1 while inactive
  bool persistent = true;
  pid_t pid = 0;
  uint64_t cpu_time_ns = 0;
  std::string last_end;  // how the guest last ended, for the daemon's log and `dominfo`-adjacent errors
};

struct VcpuView {
  uint32_t vcpu = 0;
  int32_t state = 1;  // virVcpuState: 0 offline, 1 running, 2 blocked
  uint64_t cpu_time_ns = 0;
  int host_cpu = -1;   // -1: not known here (a vCPU on an edge host)
  std::string node;    // "home", or the edge agent's address
};

struct ConsoleSource {
  std::string output_path;  // COM1 output, appended to by the guest
  std::string input_path;   // FIFO into COM1
  uint64_t start_offset = 0;
  int id = -1;              // the run this console belongs to: output ends when the domain's id changes
};

class DomainManager final {
 public:
  // Loads the definitions in `state_dir` (created if missing) and finds their running guests again.
  static absl::StatusOr<std::unique_ptr<DomainManager>> Create(const std::string& state_dir,
                                                               const std::string& coalesce_binary);
  ~DomainManager();  // guests keep running
  DomainManager(const DomainManager&) = delete;
  DomainManager& operator=(const DomainManager&) = delete;

  absl::StatusOr<DomainView> Define(const std::string& xml);
  absl::Status Undefine(const std::string& name);
  [[nodiscard]] std::vector<DomainView> List();
  absl::StatusOr<DomainView> LookupByName(const std::string& name);
  absl::StatusOr<DomainView> LookupByUuid(const Uuid& uuid);
  absl::StatusOr<DomainView> LookupById(int id);

  absl::Status Start(const std::string& name);
  absl::Status Destroy(const std::string& name);
  absl::Status Shutdown(const std::string& name);  // ACPI power button
  absl::Status Reboot(const std::string& name);    // power button, then a fresh start once it powers off
  // Every vCPU on every node held at its pause gate, or released (`coalesce ctl suspend` / `resume` on the
  // guest's control socket; docs/COALESCENCE.md "Pausing the guest").
  absl::Status Suspend(const std::string& name);
  absl::Status Resume(const std::string& name);
  absl::StatusOr<std::vector<VcpuView>> Vcpus(const std::string& name);
  // virDomainSetVcpusFlags: `live` plugs CPUs into the running guest or asks it to give some up (`coalesce ctl
  // setvcpus`, ACPI hotplug: docs/HOTPLUG.md), waiting for the guest's answer; `config` changes how many the
  // next start boots with. Neither above the definition's maximum.
  absl::Status SetVcpus(const std::string& name, uint32_t count, bool live, bool config);
  // Where `virsh console` reads and writes: output not yet read by any console client is delivered first,
  // as a pty would.
  absl::StatusOr<ConsoleSource> OpenConsole(const std::string& name);
  void ConsoleConsumed(const std::string& name, int id, uint64_t offset);
  // True while the domain runs with this id.
  bool IsRunning(const std::string& name, int id);

  [[nodiscard]] const std::string& state_dir() const { return state_dir_; }

 private:
  struct Domain {
    DomainDefinition def;                 // the persistent definition: used by the next start
    std::optional<DomainDefinition> live;  // what the running guest was started with
    bool persistent = true;
    int32_t state = kStateShutoff;
    int32_t reason = kShutoffUnknown;
    int id = -1;
    std::shared_ptr<GuestProcess> guest;  // shared: a client thread may be waiting on it as it ends
    bool destroy_requested = false;
    bool reboot_requested = false;
    uint64_t console_consumed = 0;
    std::string last_end;
  };
  absl::Status SetPaused(const std::string& name, bool pause);

  DomainManager(std::string state_dir, std::string coalesce_binary);
  absl::Status Load();
  GuestPaths PathsOf(const std::string& name) const;
  std::string DefinitionPath(const std::string& name) const;
  std::string RecordPath(const std::string& name) const;
  absl::Status LaunchLocked(Domain& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnGuestEnd(const std::string& name, int id, GuestEnd end);
  DomainView ViewLocked(const Domain& d) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Domain*> FindLocked(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FindLocked, and FailedPrecondition ("domain is not running") when it has no guest.
  absl::StatusOr<Domain*> FindRunningLocked(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SIGPWR to the guest (the ACPI power button); with `reboot` it is started again once it has powered off.
  absl::Status PressPowerButton(const std::string& name, bool reboot);
  // Destroys ended guests' watchers outside the lock.
  void Reap();

  const std::string state_dir_;
  const std::string coalesce_binary_;
  absl::Mutex mu_;
  std::map<std::string, Domain> domains_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<GuestProcess>> ended_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // set by the destructor: a late guest end restarts nothing
};

}  // namespace coalesce::daemon
