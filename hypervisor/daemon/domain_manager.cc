#include "hypervisor/daemon/domain_manager.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/base/control_socket.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/vcpu/exit_status.h"

namespace coalesce::daemon {
namespace {

absl::Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus("mkdir " + path);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Written whole or not at all: a crash mid-write never leaves a half definition behind.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus("rename " + tmp);
  return absl::OkStatus();
}

std::vector<std::string> FilesEndingWith(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(n.substr(0, n.size() - suffix.size()));
    }
  }
  ::closedir(d);
  return out;
}

}  // namespace

DomainManager::DomainManager(std::string state_dir, std::string coalesce_binary)
    : state_dir_(std::move(state_dir)), coalesce_binary_(std::move(coalesce_binary)) {}

DomainManager::~DomainManager() {
  std::vector<std::shared_ptr<GuestProcess>> guests;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [name, d] : domains_) {
      if (d.guest) guests.push_back(std::move(d.guest));
    }
    guests.insert(guests.end(), ended_.begin(), ended_.end());
    ended_.clear();
  }
  guests.clear();  // stops the watchers (outside mu_: a watcher may be waiting for it); the guests run on
}

absl::StatusOr<std::unique_ptr<DomainManager>> DomainManager::Create(const std::string& state_dir,
                                                                     const std::string& coalesce_binary) {
  if (absl::Status st = MakeDir(state_dir); !st.ok()) return st;
  if (absl::Status st = MakeDir(state_dir + "/domains"); !st.ok()) return st;
  if (absl::Status st = MakeDir(state_dir + "/run"); !st.ok()) return st;
  std::unique_ptr<DomainManager> m(new DomainManager(state_dir, coalesce_binary));
  if (absl::Status st = m->Load(); !st.ok()) return st;
  return m;
}

std::string DomainManager::DefinitionPath(const std::string& name) const {
  return absl::StrCat(state_dir_, "/domains/", name, ".xml");
}
std::string DomainManager::RecordPath(const std::string& name) const {
  return absl::StrCat(state_dir_, "/run/", name, ".pid");
}
GuestPaths DomainManager::PathsOf(const std::string& name) const {
  const std::string base = absl::StrCat(state_dir_, "/run/", name);
  return {base + ".console", base + ".console.in", base + ".log"};
}

absl::Status DomainManager::Load() {
  absl::MutexLock lock(&mu_);
  for (const std::string& name : FilesEndingWith(state_dir_ + "/domains", ".xml")) {
    absl::StatusOr<std::string> xml = ReadFile(DefinitionPath(name));
    absl::StatusOr<DomainDefinition> def =
        xml.ok() ? ParseDomainXml(*xml, /*generate_uuid=*/false) : absl::StatusOr<DomainDefinition>(xml.status());
    if (!def.ok() || def->name != name) {
      // Never dropped silently: the file stays, the daemon says why it is not served.
      LOG_WARN("daemon: ignoring %s: %s", DefinitionPath(name).c_str(),
                 def.ok() ? "its <name> differs from the file name" : std::string(def.status().message()).c_str());
      continue;
    }
    domains_[name].def = *std::move(def);
  }
  // Guests started by an earlier daemon: running ones are watched again, ended ones reported.
  for (const std::string& name : FilesEndingWith(state_dir_ + "/run", ".pid")) {
    absl::StatusOr<std::string> record = ReadFile(RecordPath(name));
    std::vector<std::string> f = absl::StrSplit(record.value_or(""), ' ', absl::SkipWhitespace());
    int64_t pid = 0;
    uint64_t start = 0;
    int id = 0;
    const bool parsed = f.size() == 3 && absl::SimpleAtoi(f[0], &pid) && absl::SimpleAtoi(f[1], &start) &&
                        absl::SimpleAtoi(f[2], &id) && pid > 0;
    auto live = absl::StrCat(state_dir_, "/run/", name, ".xml");
    absl::StatusOr<std::string> live_xml = ReadFile(live);
    absl::StatusOr<DomainDefinition> live_def = live_xml.ok()
                                                    ? ParseDomainXml(*live_xml, false)
                                                    : absl::StatusOr<DomainDefinition>(live_xml.status());
    auto it = domains_.find(name);
    const bool persistent = it != domains_.end();
    if (!parsed || !live_def.ok()) {
      LOG_WARN("daemon: the run record of domain '%s' is unreadable; its guest, if any, is lost", name.c_str());
      ::unlink(RecordPath(name).c_str());
      continue;
    }
    Domain& d = domains_[name];
    d.persistent = persistent;
    if (!persistent) d.def = *live_def;
    auto guest = GuestProcess::Adopt(static_cast<pid_t>(pid), start,
                                     [this, name, id](GuestEnd end) { OnGuestEnd(name, id, end); });
    if (!guest.ok()) {
      d.last_end = absl::StrCat("lost: its guest (process ", pid, ") ended while the daemon was not running");
      LOG_WARN("daemon: domain '%s': %s", name.c_str(), d.last_end.c_str());
      d.state = kStateShutoff;
      d.reason = kShutoffDaemon;
      ::unlink(RecordPath(name).c_str());
      if (!persistent) domains_.erase(name);
      continue;
    }
    d.guest = *std::move(guest);
    d.live = *live_def;
    d.id = id;
    d.state = kStateRunning;
    d.reason = kRunningBooted;
    // What an earlier daemon's consoles read is not known: a console opened now starts at what comes next
    // rather than replaying the whole boot.
    struct stat console_stat {};
    if (::stat(PathsOf(name).console.c_str(), &console_stat) == 0) {
      d.console_consumed = static_cast<uint64_t>(console_stat.st_size);
    }
    // A guest paused by an earlier daemon says so in its status (its vCPU threads wait at their pause gates).
    const std::string vm_name = VmNameOf(*live_def);
    if (absl::StatusOr<std::string> status = CallControl(ControlSocketPath(vm_name), "status", absl::Seconds(5));
        status.ok() && absl::StartsWith(*status, absl::StrCat("vm ", vm_name, ": paused"))) {
      d.state = kStatePaused;
      d.reason = kPausedUser;
    }
    if (id >= next_id_) next_id_ = id + 1;
    LOG_INFO("daemon: domain '%s' is running (process %d, id %d), found again", name.c_str(), d.guest->pid(), id);
  }
  return absl::OkStatus();
}

absl::StatusOr<DomainManager::Domain*> DomainManager::FindLocked(const std::string& name) {
  auto it = domains_.find(name);
  if (it == domains_.end()) return absl::NotFoundError(absl::StrCat("no domain with matching name '", name, "'"));
  return &it->second;
}

absl::StatusOr<DomainManager::Domain*> DomainManager::FindRunningLocked(const std::string& name) {
  absl::StatusOr<Domain*> d = FindLocked(name);
  if (d.ok() && !(*d)->guest) return absl::FailedPreconditionError("domain is not running");
  return d;
}

DomainView DomainManager::ViewLocked(const Domain& d) const {
  DomainView v;
  v.def = d.live ? *d.live : d.def;
  v.next_def = d.def;
  v.state = d.state;
  v.reason = d.reason;
  v.id = d.id;
  v.persistent = d.persistent;
  v.last_end = d.last_end;
  if (d.guest) {
    v.pid = d.guest->pid();
    v.cpu_time_ns = ProcessCpuTimeNs(v.pid);
  }
  return v;
}

void DomainManager::Reap() {
  std::vector<std::shared_ptr<GuestProcess>> done;
  {
    absl::MutexLock lock(&mu_);
    done.swap(ended_);
  }
}

absl::StatusOr<DomainView> DomainManager::Define(const std::string& xml) {
  Reap();
  absl::StatusOr<DomainDefinition> def = ParseDomainXml(xml);
  if (!def.ok()) return def.status();
  absl::MutexLock lock(&mu_);
  for (const auto& [name, d] : domains_) {
    if (name == def->name && d.def.uuid != def->uuid && xml.find("<uuid") != std::string::npos) {
      return absl::AlreadyExistsError(
          absl::StrCat("domain '", name, "' already exists with uuid ", FormatUuid(d.def.uuid)));
    }
    if (name != def->name && d.def.uuid == def->uuid) {
      return absl::AlreadyExistsError(
          absl::StrCat("domain '", name, "' already exists with uuid ", FormatUuid(d.def.uuid)));
    }
  }
  auto it = domains_.find(def->name);
  if (it != domains_.end()) def->uuid = it->second.def.uuid;  // a redefinition keeps its identity
  if (absl::Status st = WriteFileAtomically(DefinitionPath(def->name), FormatDomainXml(*def)); !st.ok()) return st;
  Domain& d = domains_[def->name];
  d.def = *def;  // a running guest keeps its configuration until its next start, as in libvirt
  d.persistent = true;
  return ViewLocked(d);
}

absl::Status DomainManager::Undefine(const std::string& name) {
  Reap();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Domain*> d = FindLocked(name);
  if (!d.ok()) return d.status();
  if (!(*d)->persistent) {
    return absl::FailedPreconditionError(absl::StrCat("cannot undefine transient domain '", name, "'"));
  }
  if (::unlink(DefinitionPath(name).c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus("unlink " + DefinitionPath(name));
  }
  if ((*d)->guest) {
    (*d)->persistent = false;  // runs on as a transient domain and goes when it stops
  } else {
    domains_.erase(name);
  }
  return absl::OkStatus();
}

std::vector<DomainView> DomainManager::List() {
  Reap();
  absl::MutexLock lock(&mu_);
  std::vector<DomainView> out;
  for (const auto& [name, d] : domains_) out.push_back(ViewLocked(d));
  return out;
}

absl::StatusOr<DomainView> DomainManager::LookupByName(const std::string& name) {
  Reap();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Domain*> d = FindLocked(name);
  if (!d.ok()) return d.status();
  return ViewLocked(**d);
}

absl::StatusOr<DomainView> DomainManager::LookupByUuid(const Uuid& uuid) {
  absl::MutexLock lock(&mu_);
  for (const auto& [name, d] : domains_) {
    if (d.def.uuid == uuid) return ViewLocked(d);
  }
  return absl::NotFoundError(absl::StrCat("no domain with matching uuid '", FormatUuid(uuid), "'"));
}

absl::StatusOr<DomainView> DomainManager::LookupById(int id) {
  absl::MutexLock lock(&mu_);
  for (const auto& [name, d] : domains_) {
    if (d.id == id && d.guest) return ViewLocked(d);
  }
  return absl::NotFoundError(absl::StrCat("no domain with matching id ", id));
}

absl::Status DomainManager::LaunchLocked(Domain& d) {
  const std::string name = d.def.name;
  const int id = next_id_++;
  if (absl::Status st = WriteFileAtomically(absl::StrCat(state_dir_, "/run/", name, ".xml"), FormatDomainXml(d.def));
      !st.ok()) {
    return st;
  }
  absl::StatusOr<std::unique_ptr<GuestProcess>> guest =
      GuestProcess::Launch(coalesce_binary_, RunArguments(d.def), PathsOf(name),
                           [this, name, id](GuestEnd end) { OnGuestEnd(name, id, end); });
  if (!guest.ok()) return guest.status();
  d.guest = *std::move(guest);
  d.live = d.def;
  d.id = id;
  d.state = kStateRunning;
  d.reason = kRunningBooted;
  d.destroy_requested = d.reboot_requested = false;
  d.console_consumed = 0;
  if (absl::Status st = WriteFileAtomically(RecordPath(name), absl::StrCat(d.guest->pid(), " ", d.guest->start_time(),
                                                                           " ", id, "\n"));
      !st.ok()) {
    LOG_WARN("daemon: domain '%s': %s (a restarted daemon will not find this guest)", name.c_str(),
               std::string(st.message()).c_str());
  }
  LOG_INFO("daemon: domain '%s' started: process %d, id %d", name.c_str(), d.guest->pid(), id);
  return absl::OkStatus();
}

void DomainManager::OnGuestEnd(const std::string& name, int id, GuestEnd end) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;  // the daemon is going: the next one reads the run record and reports the end
  auto it = domains_.find(name);
  if (it == domains_.end() || it->second.id != id) return;
  Domain& d = it->second;
  ended_.push_back(std::move(d.guest));
  ::unlink(RecordPath(name).c_str());
  int32_t reason = kShutoffShutdown;
  std::string how;
  if (d.destroy_requested) {
    reason = kShutoffDestroyed;
    how = "destroyed";
  } else if (!end.known) {
    reason = kShutoffUnknown;
    how = "ended (started by an earlier daemon: exit status unknown)";
  } else if (end.signal != 0) {
    reason = kShutoffCrashed;
    how = absl::StrCat("killed by signal ", end.signal, " (", strsignal(end.signal), ")");
  } else if (end.exit_status == exit_status::kGuestCrashed) {
    reason = kShutoffCrashed;
    how = "the guest crashed (exit status 6; the register dump is in the domain's log)";
  } else if (end.exit_status == exit_status::kHostFailure || end.exit_status == exit_status::kUsage) {
    reason = kShutoffFailed;
    how = absl::StrCat("failed (exit status ", end.exit_status, "; see ", PathsOf(name).log, ")");
  } else {
    how = absl::StrCat("powered off (exit status ", end.exit_status, ")");
  }
  d.last_end = how;
  const bool restart = !d.destroy_requested && end.known && end.signal == 0 &&
                       (end.exit_status == exit_status::kGuestReset ||
                        (d.reboot_requested && end.exit_status == exit_status::kPowerOff));
  LOG_INFO("daemon: domain '%s' (id %d) %s%s", name.c_str(), id, how.c_str(), restart ? "; restarting it" : "");
  if (restart) {
    if (absl::Status st = LaunchLocked(d); st.ok()) return;
    else d.last_end = absl::StrCat("restart failed: ", st.message());
    reason = kShutoffFailed;
  }
  d.state = kStateShutoff;
  d.reason = reason;
  d.id = -1;
  d.live.reset();
  d.reboot_requested = false;
  if (!d.persistent) domains_.erase(it);
}

absl::Status DomainManager::Start(const std::string& name) {
  Reap();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Domain*> d = FindLocked(name);
  if (!d.ok()) return d.status();
  if ((*d)->guest) return absl::FailedPreconditionError("domain is already running");
  return LaunchLocked(**d);
}

absl::Status DomainManager::Destroy(const std::string& name) {
  Reap();
  std::shared_ptr<GuestProcess> guest;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Domain*> d = FindRunningLocked(name);
    if (!d.ok()) return d.status();
    (*d)->destroy_requested = true;
    guest = (*d)->guest;
  }
  return guest->Terminate(/*grace_ms=*/5000);  // outside mu_: its watcher takes mu_ to report the end
}

absl::Status DomainManager::Shutdown(const std::string& name) { return PressPowerButton(name, /*reboot=*/false); }

absl::Status DomainManager::Reboot(const std::string& name) { return PressPowerButton(name, /*reboot=*/true); }

absl::Status DomainManager::PressPowerButton(const std::string& name, bool reboot) {
  Reap();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Domain*> d = FindRunningLocked(name);
  if (!d.ok()) return d.status();
  if ((*d)->state == kStatePaused) return absl::FailedPreconditionError("domain is paused: resume it first");
  // A shutdown after an unanswered reboot powers off for good.
  (*d)->reboot_requested = reboot;
  return (*d)->guest->Signal(SIGPWR);
}

absl::Status DomainManager::Suspend(const std::string& name) { return SetPaused(name, true); }

absl::Status DomainManager::Resume(const std::string& name) { return SetPaused(name, false); }

absl::Status DomainManager::SetPaused(const std::string& name, bool pause) {
  Reap();
  std::string vm_name;
  int id = -1;
  bool recorded_paused = false;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Domain*> d = FindRunningLocked(name);
    if (!d.ok()) return d.status();
    recorded_paused = (*d)->state == kStatePaused;
    // Not decided on this record alone: the guest may have been paused or resumed from its control socket, or a
    // resume an edge did not confirm left the home running. The guest's answer decides.
    vm_name = VmNameOf((*d)->live ? *(*d)->live : (*d)->def);
    id = (*d)->id;
  }
  // Not under mu_: the guest's vCPUs are held (or released) on every node, and edges answer over the network.
  absl::StatusOr<std::string> reply =
      CallControl(ControlSocketPath(vm_name), pause ? "suspend" : "resume", absl::Seconds(30));
  if (!reply.ok()) return reply.status();
  // The guest is in the state asked for already (paused by `coalesce ctl`, or this daemon's record was stale):
  // the record follows the guest rather than refuse.
  const bool already = absl::StrContains(*reply, pause ? "paused already" : "is not paused");
  const bool failed = absl::StartsWith(*reply, "error: ") && !already;
  // A failed resume still leaves the home running ("the home runs"): the record says so, and the error is
  // returned (a resume may be asked again).
  const bool now_paused = pause ? !failed : (failed && !absl::StrContains(*reply, "the home runs"));
  LOG_INFO("daemon: domain '%s': %s", name.c_str(), reply->c_str());
  {
    absl::MutexLock lock(&mu_);
    auto it = domains_.find(name);
    if (it != domains_.end() && it->second.id == id && it->second.guest) {
      it->second.state = now_paused ? kStatePaused : kStateRunning;
      it->second.reason = now_paused ? kPausedUser : kRunningUnpaused;
    }
  }
  if (failed) return absl::FailedPreconditionError(reply->substr(7));
  if (!pause && already && !recorded_paused) return absl::FailedPreconditionError("domain is not paused");
  return absl::OkStatus();
}

absl::Status DomainManager::SetVcpus(const std::string& name, uint32_t count, bool live, bool config) {
  Reap();
  std::string vm_name;
  int id = -1;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Domain*> d = FindLocked(name);
    if (!d.ok()) return d.status();
    const DomainDefinition& running = (*d)->live ? *(*d)->live : (*d)->def;
    if (count == 0 || count > running.vcpus || (config && count > (*d)->def.vcpus)) {
      return absl::InvalidArgumentError(absl::StrCat("requested vcpus (", count, ") is not between 1 and the maximum (",
                                                     running.vcpus, ", the definition's <vcpu>)"));
    }
    if (live && !(*d)->guest) return absl::FailedPreconditionError("domain is not running");
    if (config) {
      DomainDefinition next = (*d)->def;
      next.current_vcpus = count < next.vcpus ? count : 0;
      if (absl::Status st = WriteFileAtomically(DefinitionPath(name), FormatDomainXml(next)); !st.ok()) return st;
      (*d)->def = std::move(next);
    }
    if (!live) return absl::OkStatus();
    vm_name = VmNameOf(running);
    id = (*d)->id;
  }
  // Not under mu_: the guest may take seconds to offline a CPU, and other clients are served meanwhile.
  absl::StatusOr<std::string> reply =
      CallControl(ControlSocketPath(vm_name), absl::StrCat("setvcpus ", count), absl::Seconds(90));
  if (!reply.ok()) return reply.status();
  if (absl::StartsWith(*reply, "error: ")) return absl::FailedPreconditionError(reply->substr(7));
  LOG_INFO("daemon: domain '%s': %s", name.c_str(), reply->c_str());
  absl::MutexLock lock(&mu_);
  auto it = domains_.find(name);
  if (it != domains_.end() && it->second.id == id && it->second.live) {
    it->second.live->current_vcpus = count < it->second.live->vcpus ? count : 0;
    // The run record's copy too, so a restarted daemon reports the count the guest has now.
    if (absl::Status st = WriteFileAtomically(absl::StrCat(state_dir_, "/run/", name, ".xml"),
                                              FormatDomainXml(*it->second.live));
        !st.ok()) {
      LOG_WARN("daemon: domain '%s': %s", name.c_str(), std::string(st.message()).c_str());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<VcpuView>> DomainManager::Vcpus(const std::string& name) {
  Reap();
  DomainDefinition def;
  pid_t pid = 0;
  bool paused = false;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Domain*> d = FindRunningLocked(name);
    if (!d.ok()) return d.status();
    def = (*d)->live ? *(*d)->live : (*d)->def;
    pid = (*d)->guest->pid();
    paused = (*d)->state == kStatePaused;
  }
  std::vector<VcpuView> out(def.vcpus);
  for (uint32_t i = 0; i < def.vcpus; ++i) {
    out[i].vcpu = i;
    out[i].node = "unknown";
  }
  for (const EdgePlacement& e : def.edges) {
    for (uint32_t v : ParseVcpuList(e.vcpus).value_or(std::vector<uint32_t>{})) {
      if (v < out.size()) out[v].node = e.address;
    }
  }
  for (const VcpuThread& t : ReadVcpuThreads(pid)) {
    if (t.vcpu >= out.size()) continue;
    out[t.vcpu].node = "home";
    out[t.vcpu].cpu_time_ns = t.cpu_time_ns;
    out[t.vcpu].host_cpu = t.host_cpu;
    out[t.vcpu].state = paused ? 2 : 1;
  }
  return out;
}

absl::StatusOr<ConsoleSource> DomainManager::OpenConsole(const std::string& name) {
  Reap();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Domain*> d = FindRunningLocked(name);
  if (!d.ok()) return d.status();
  GuestPaths p = PathsOf(name);
  return ConsoleSource{p.console, p.console_in, (*d)->console_consumed, (*d)->id};
}

void DomainManager::ConsoleConsumed(const std::string& name, int id, uint64_t offset) {
  absl::MutexLock lock(&mu_);
  auto it = domains_.find(name);
  if (it != domains_.end() && it->second.id == id && offset > it->second.console_consumed) {
    it->second.console_consumed = offset;
  }
}

bool DomainManager::IsRunning(const std::string& name, int id) {
  absl::MutexLock lock(&mu_);
  auto it = domains_.find(name);
  return it != domains_.end() && it->second.id == id && it->second.guest != nullptr;
}

}  // namespace coalesce::daemon
