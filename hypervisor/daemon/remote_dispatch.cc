#include "hypervisor/daemon/remote_dispatch.h"

#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "hypervisor/base/log.h"
#include "hypervisor/daemon/remote_protocol.h"

namespace coalesce::daemon {

std::string ProcedureName(int32_t proc) {
  static const std::map<int32_t, const char*> kNames = {
      {kProcConnectOpen, "CONNECT_OPEN"}, {kProcConnectClose, "CONNECT_CLOSE"},
      {kProcConnectGetType, "CONNECT_GET_TYPE"}, {kProcConnectGetVersion, "CONNECT_GET_VERSION"},
      {kProcConnectGetMaxVcpus, "CONNECT_GET_MAX_VCPUS"}, {kProcNodeGetInfo, "NODE_GET_INFO"},
      {kProcConnectGetCapabilities, "CONNECT_GET_CAPABILITIES"}, {8, "DOMAIN_ATTACH_DEVICE"},
      {kProcDomainCreate, "DOMAIN_CREATE"}, {10, "DOMAIN_CREATE_XML"}, {13, "DOMAIN_DETACH_DEVICE"},
      {26, "DOMAIN_PIN_VCPU"}, {29, "DOMAIN_SET_AUTOSTART"}, {30, "DOMAIN_SET_MAX_MEMORY"},
      {31, "DOMAIN_SET_MEMORY"}, {32, "DOMAIN_SET_VCPUS"}, {53, "DOMAIN_CORE_DUMP"}, {54, "DOMAIN_RESTORE"},
      {55, "DOMAIN_SAVE"}, {56, "DOMAIN_GET_SCHEDULER_TYPE"}, {64, "DOMAIN_BLOCK_STATS"},
      {65, "DOMAIN_INTERFACE_STATS"}, {159, "DOMAIN_MEMORY_STATS"}, {160, "DOMAIN_ATTACH_DEVICE_FLAGS"},
      {163, "DOMAIN_GET_JOB_INFO"}, {167, "CONNECT_DOMAIN_EVENT_REGISTER_ANY"}, {182, "DOMAIN_MANAGED_SAVE"},
      {185, "DOMAIN_SNAPSHOT_CREATE_XML"}, {199, "DOMAIN_SET_VCPUS_FLAGS"}, {210, "DOMAIN_INJECT_NMI"},
      {211, "DOMAIN_SCREENSHOT"}, {226, "DOMAIN_SEND_KEY"}, {245, "DOMAIN_RESET"}, {264, "DOMAIN_SET_METADATA"},
      {265, "DOMAIN_GET_METADATA"}, {277, "DOMAIN_GET_HOSTNAME"}, {278, "DOMAIN_GET_SECURITY_LABEL_LIST"},
      {187, "DOMAIN_SNAPSHOT_NUM"}, {230, "DOMAIN_GET_VCPU_PIN_INFO"}, {293, "NODE_GET_CPU_MAP"},
      {316, "CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY"}, {kProcDomainDefineXmlFlags, "DOMAIN_DEFINE_XML_FLAGS"},
      {360, "CONNECT_REGISTER_CLOSE_CALLBACK"}, {361, "CONNECT_UNREGISTER_CLOSE_CALLBACK"},
      {426, "DOMAIN_GET_MESSAGES"},
  };
  auto it = kNames.find(proc);
  return it != kNames.end() ? it->second : absl::StrCat("procedure ", proc);
}

namespace {

// The error a status becomes on the wire, with libvirt's message prefixes so virsh reads as it does with
// libvirtd ("error: Domain not found: ...").
RpcError ToRpcError(const absl::Status& st, int32_t proc) {
  const std::string m(st.message());
  switch (st.code()) {
    case absl::StatusCode::kNotFound:
      return {kErrNoDomain, kFromRemote, "Domain not found: " + m};
    case absl::StatusCode::kInvalidArgument:
      if (proc == kProcDomainDefineXml || proc == kProcDomainDefineXmlFlags) {
        return {kErrXmlError, kFromDomain, "XML error: " + m};
      }
      return {kErrInvalidArg, kFromRemote, "invalid argument: " + m};
    case absl::StatusCode::kFailedPrecondition:
      return {kErrOperationInvalid, kFromRemote, "Requested operation is not valid: " + m};
    case absl::StatusCode::kAlreadyExists:
      return {kErrOperationFailed, kFromRemote, "operation failed: " + m};
    case absl::StatusCode::kUnimplemented:
      return {kErrNoSupport, kFromRemote, "this function is not supported by the connection driver: " + m};
    case absl::StatusCode::kDataLoss:
      return {kErrRpc, kFromRpc, m};
    default:
      return {kErrInternal, kFromRemote, "internal error: " + m};
  }
}

void PutDomain(XdrEncoder& e, const DomainView& d) {
  e.PutString(d.def.name);
  e.PutFixedOpaque(d.def.uuid);
  e.PutI32(d.id);
}

// remote_nonnull_domain: only the UUID identifies it (names may be reused by a redefinition).
struct DomainRef {
  std::string name;
  Uuid uuid{};
};
DomainRef GetDomain(XdrDecoder& d) {
  DomainRef r;
  r.name = d.GetString();
  r.uuid = d.GetFixedOpaque<16>();
  d.GetI32();
  return r;
}

uint64_t HostMemoryKib() {
  struct sysinfo si {};
  ::sysinfo(&si);
  return static_cast<uint64_t>(si.totalram) * si.mem_unit / 1024;
}

int HostMhz() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu MHz", 0) == 0) {
      auto colon = line.find(':');
      double mhz = 0;
      if (colon != std::string::npos &&
          absl::SimpleAtod(absl::StripAsciiWhitespace(line.substr(colon + 1)), &mhz)) {
        return static_cast<int>(mhz);
      }
    }
  }
  return 0;
}

std::string Hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

// Our version as libvirt encodes versions: major * 1,000,000 + minor * 1,000 + micro (0.1.0).
constexpr uint64_t kCoalesceVersion = 1000;
// The libvirt API level whose protocol this daemon speaks (Debian 12's 9.0.0).
constexpr uint64_t kLibvirtVersion = 9000000;

}  // namespace

RemoteDispatcher::~RemoteDispatcher() = default;

void RemoteDispatcher::Forget(Connection* conn) {
  std::map<uint32_t, std::shared_ptr<ConsoleStream>> streams;
  {
    absl::MutexLock lock(&mu_);
    auto it = clients_.find(conn);
    if (it == clients_.end()) return;
    streams.swap(it->second.streams);
    clients_.erase(it);
  }
  streams.clear();  // joins the pumps outside mu_
}

void RemoteDispatcher::Handle(const std::shared_ptr<Connection>& conn, const Message& message) {
  Client* client = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = clients_.try_emplace(conn.get());
    client = &it->second;
    if (inserted) {
      Connection* raw = conn.get();
      conn->OnClose([this, raw] { Forget(raw); });
    }
  }
  const MessageHeader& h = message.header;
  if (h.program != kRemoteProgram || h.version != kRemoteVersion) {
    LOG_WARN("daemon: client %d: program %#x version %u is not served", conn->fd(), h.program, h.version);
    if (h.type != MessageType::kCall) return;
    MessageHeader reply = h;
    reply.type = MessageType::kReply;
    reply.status = MessageStatus::kError;
    RpcError e{kErrRpc, kFromRpc, absl::StrCat("unknown program ", h.program, " version ", h.version)};
    conn->Send(reply, EncodeError(e));
    return;
  }
  if (h.type == MessageType::kStream) {
    HandleStream(conn, message);
    return;
  }
  if (h.type != MessageType::kCall) {
    LOG_WARN("daemon: client %d: unexpected message type %u ignored", conn->fd(), static_cast<uint32_t>(h.type));
    return;
  }
  XdrDecoder args(message.payload);
  XdrEncoder ret;
  absl::Status st = Call(conn, *client, h, args, ret);
  if (st.ok() && !args.Finished()) {
    st = absl::DataLossError(absl::StrCat("malformed arguments for ", ProcedureName(h.procedure), ": ",
                                          args.ok() ? "trailing bytes" : args.error()));
  }
  if (absl::IsCancelled(st)) return;  // the call sent its own reply (OPEN_CONSOLE: before its stream data)
  MessageHeader reply = h;
  reply.type = MessageType::kReply;
  if (st.ok()) {
    reply.status = MessageStatus::kOk;
    conn->Send(reply, ret.bytes());
  } else {
    if (st.code() == absl::StatusCode::kDataLoss) LOG_WARN("daemon: client %d: %s", conn->fd(), st.message());
    reply.status = MessageStatus::kError;
    conn->Send(reply, EncodeError(ToRpcError(st, h.procedure)));
  }
  if (h.procedure == kProcConnectClose) conn->Close();
}

void RemoteDispatcher::HandleStream(const std::shared_ptr<Connection>& conn, const Message& message) {
  std::shared_ptr<ConsoleStream> stream;
  {
    absl::MutexLock lock(&mu_);
    auto& streams = clients_[conn.get()].streams;
    auto it = streams.find(message.header.serial);
    if (it != streams.end()) stream = it->second;
  }
  if (!stream) {
    LOG_WARN("daemon: client %d: stream data for unknown stream %u dropped", conn->fd(), message.header.serial);
    return;
  }
  if (message.header.status == MessageStatus::kContinue) {
    stream->Write(message.payload);
    return;
  }
  stream->ClientEnded(message.header.status);
  absl::MutexLock lock(&mu_);
  clients_[conn.get()].streams.erase(message.header.serial);
}

absl::Status RemoteDispatcher::OpenConsole(const std::shared_ptr<Connection>& conn, Client& client,
                                           const MessageHeader& header, const std::string& domain,
                                           uint32_t flags) {
  absl::StatusOr<ConsoleSource> source = domains_->OpenConsole(domain);
  if (!source.ok()) return source.status();
  std::shared_ptr<ConsoleStream> displaced;
  auto stream = std::make_shared<ConsoleStream>(conn, header, domains_, domain, *source);
  {
    absl::MutexLock lock(&mu_);
    auto it = consoles_.find(domain);
    if (it != consoles_.end()) displaced = it->second.lock();
    if (displaced && !displaced->finished() && !(flags & kConsoleForce)) {
      return absl::AlreadyExistsError("Active console session exists for this domain");
    }
    if (client.streams.count(header.serial) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("serial ", header.serial, " already names an open stream"));
    }
    consoles_[domain] = stream;
    client.streams[header.serial] = stream;
  }
  if (displaced) displaced->Close();
  return absl::OkStatus();
}

absl::Status RemoteDispatcher::Call(const std::shared_ptr<Connection>& conn, Client& client,
                                    const MessageHeader& header, XdrDecoder& args, XdrEncoder& ret) {
  const int32_t proc = header.procedure;
  // Before CONNECT_OPEN a client may only ask how to authenticate and what the server supports.
  if (!client.opened && proc != kProcAuthList && proc != kProcConnectSupportsFeature && proc != kProcConnectOpen) {
    return absl::FailedPreconditionError("the connection is not open yet (CONNECT_OPEN first)");
  }
  auto lookup = [&](const DomainRef& r) -> absl::StatusOr<DomainView> {
    absl::StatusOr<DomainView> v = domains_->LookupByUuid(r.uuid);
    if (!v.ok()) return absl::NotFoundError(absl::StrCat("no domain with matching uuid '", FormatUuid(r.uuid),
                                                          "' (", r.name, ")"));
    return v;
  };
  switch (proc) {
    case kProcAuthList:
      ret.PutU32(1);
      ret.PutU32(0);  // REMOTE_AUTH_NONE: the socket's mode (0600) is the access control
      return absl::OkStatus();
    case kProcConnectSupportsFeature:
      args.GetI32();
      ret.PutI32(0);  // none: no keepalive, no close or event callbacks; clients fall back
      return absl::OkStatus();
    case kProcConnectOpen: {
      std::optional<std::string> name = args.GetOptionalString();
      args.GetU32();
      client.opened = true;
      LOG_DEBUG("daemon: client %d opened '%s'", conn->fd(), name.value_or(""));
      return absl::OkStatus();
    }
    case kProcConnectClose:
      return absl::OkStatus();
    case kProcConnectGetType:
      ret.PutString("Coalesce");
      return absl::OkStatus();
    case kProcConnectGetVersion:
      ret.PutU64(kCoalesceVersion);
      return absl::OkStatus();
    case kProcConnectGetLibVersion:
      ret.PutU64(kLibvirtVersion);
      return absl::OkStatus();
    case kProcConnectGetHostname:
      ret.PutString(Hostname());
      return absl::OkStatus();
    case kProcConnectGetUri:
      ret.PutString("coalesce:///system");
      return absl::OkStatus();
    case kProcConnectIsSecure:
      ret.PutI32(1);  // a local UNIX socket
      return absl::OkStatus();
    case kProcConnectGetMaxVcpus:
      args.GetOptionalString();
      ret.PutI32(255);
      return absl::OkStatus();
    case kProcNodeGetInfo: {
      // char model[32]: rpcgen encodes each char of a fixed array as a 4-byte word.
      const char model[] = "x86_64";
      for (size_t i = 0; i < 32; ++i) ret.PutI32(i < sizeof model ? model[i] : 0);
      const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
      ret.PutU64(HostMemoryKib());
      ret.PutI32(static_cast<int32_t>(cpus));
      ret.PutI32(HostMhz());
      ret.PutI32(1);                             // NUMA nodes
      ret.PutI32(1);                             // sockets per node
      ret.PutI32(static_cast<int32_t>(cpus));    // cores per socket
      ret.PutI32(1);                             // threads per core
      return absl::OkStatus();
    }
    case kProcConnectListAllDomains: {
      const int32_t need_results = args.GetI32();
      const uint32_t flags = args.GetU32();
      std::vector<DomainView> all = domains_->List();
      std::vector<DomainView> out;
      for (const DomainView& d : all) {
        const bool active = d.id >= 0;
        if ((flags & (kListActive | kListInactive)) && !((flags & kListActive) && active) &&
            !((flags & kListInactive) && !active)) {
          continue;
        }
        if ((flags & (kListPersistent | kListTransient)) && !((flags & kListPersistent) && d.persistent) &&
            !((flags & kListTransient) && !d.persistent)) {
          continue;
        }
        if (flags & (kListRunning | kListPaused | kListShutoff | kListOther)) {
          const bool running = d.state == kStateRunning, paused = d.state == kStatePaused,
                     shutoff = d.state == kStateShutoff;
          if (!((flags & kListRunning) && running) && !((flags & kListPaused) && paused) &&
              !((flags & kListShutoff) && shutoff) && !((flags & kListOther) && !running && !paused && !shutoff)) {
            continue;
          }
        }
        out.push_back(d);
      }
      if (need_results) {
        ret.PutU32(static_cast<uint32_t>(out.size()));
        for (const DomainView& d : out) PutDomain(ret, d);
      } else {
        ret.PutU32(0);
      }
      ret.PutU32(static_cast<uint32_t>(out.size()));
      return absl::OkStatus();
    }
    case kProcConnectNumOfDomains:
    case kProcConnectNumOfDefinedDomains: {
      int32_t n = 0;
      for (const DomainView& d : domains_->List()) n += (d.id >= 0) == (proc == kProcConnectNumOfDomains);
      ret.PutI32(n);
      return absl::OkStatus();
    }
    case kProcConnectListDomains: {
      const int32_t max = args.GetI32();
      std::vector<int32_t> ids;
      for (const DomainView& d : domains_->List()) {
        if (d.id >= 0 && static_cast<int32_t>(ids.size()) < max) ids.push_back(d.id);
      }
      ret.PutU32(static_cast<uint32_t>(ids.size()));
      for (int32_t id : ids) ret.PutI32(id);
      return absl::OkStatus();
    }
    case kProcConnectListDefinedDomains: {
      const int32_t max = args.GetI32();
      std::vector<std::string> names;
      for (const DomainView& d : domains_->List()) {
        if (d.id < 0 && static_cast<int32_t>(names.size()) < max) names.push_back(d.def.name);
      }
      ret.PutU32(static_cast<uint32_t>(names.size()));
      for (const std::string& n : names) ret.PutString(n);
      return absl::OkStatus();
    }
    case kProcDomainLookupByName: {
      std::string name = args.GetString();
      if (!args.Finished()) return absl::OkStatus();
      absl::StatusOr<DomainView> d = domains_->LookupByName(name);
      if (!d.ok()) return d.status();
      PutDomain(ret, *d);
      return absl::OkStatus();
    }
    case kProcDomainLookupByUuid: {
      Uuid uuid = args.GetFixedOpaque<16>();
      if (!args.Finished()) return absl::OkStatus();
      absl::StatusOr<DomainView> d = domains_->LookupByUuid(uuid);
      if (!d.ok()) return d.status();
      PutDomain(ret, *d);
      return absl::OkStatus();
    }
    case kProcDomainLookupById: {
      const int32_t id = args.GetI32();
      if (!args.Finished()) return absl::OkStatus();
      absl::StatusOr<DomainView> d = domains_->LookupById(id);
      if (!d.ok()) return d.status();
      PutDomain(ret, *d);
      return absl::OkStatus();
    }
    case kProcDomainDefineXml:
    case kProcDomainDefineXmlFlags: {
      std::string xml = args.GetString();
      const uint32_t define_flags = proc == kProcDomainDefineXmlFlags ? args.GetU32() : 0;
      if (!args.Finished()) return absl::OkStatus();  // malformed: nothing defined
      // VALIDATE (1), `virsh define --validate`: every definition is checked against what the daemon honours.
      if ((define_flags & ~uint32_t{1}) != 0) return absl::UnimplementedError("define flags other than VALIDATE");
      absl::StatusOr<DomainView> d = domains_->Define(xml);
      if (!d.ok()) return d.status();
      PutDomain(ret, *d);
      return absl::OkStatus();
    }
    default:
      break;
  }
  // Every other implemented call starts with the domain.
  const bool domain_call =
      proc == kProcDomainUndefine || proc == kProcDomainUndefineFlags || proc == kProcDomainCreate ||
      proc == kProcDomainCreateWithFlags || proc == kProcDomainDestroy || proc == kProcDomainDestroyFlags ||
      proc == kProcDomainShutdown || proc == kProcDomainShutdownFlags || proc == kProcDomainReboot ||
      proc == kProcDomainSuspend || proc == kProcDomainResume || proc == kProcDomainGetInfo ||
      proc == kProcDomainGetState || proc == kProcDomainGetXmlDesc || proc == kProcDomainGetOsType ||
      proc == kProcDomainGetAutostart || proc == kProcDomainIsActive || proc == kProcDomainIsPersistent ||
      proc == kProcDomainIsUpdated || proc == kProcDomainHasManagedSaveImage || proc == kProcDomainGetVcpus ||
      proc == kProcDomainGetMaxVcpus || proc == kProcDomainGetVcpusFlags || proc == kProcDomainGetMaxMemory ||
      proc == kProcDomainOpenConsole || proc == kProcDomainGetControlInfo || proc == kProcDomainSetVcpusFlags;
  if (!domain_call) {
    return absl::UnimplementedError(absl::StrCat(ProcedureName(proc), " (Coalesce does not implement it)"));
  }
  DomainRef ref = GetDomain(args);
  // Every argument is decoded and the payload checked before anything is done: a malformed call changes
  // nothing.
  const bool has_flags = proc == kProcDomainUndefineFlags || proc == kProcDomainCreateWithFlags ||
                         proc == kProcDomainDestroyFlags || proc == kProcDomainShutdownFlags ||
                         proc == kProcDomainReboot || proc == kProcDomainGetState || proc == kProcDomainGetXmlDesc ||
                         proc == kProcDomainHasManagedSaveImage || proc == kProcDomainGetVcpusFlags ||
                         proc == kProcDomainGetControlInfo || proc == kProcDomainSetVcpusFlags;
  int32_t maxinfo = 0, maplen = 0;
  std::optional<std::string> console_dev;
  if (proc == kProcDomainGetVcpus) {
    maxinfo = args.GetI32();
    maplen = args.GetI32();
  }
  if (proc == kProcDomainOpenConsole) console_dev = args.GetOptionalString();
  const uint32_t nvcpus = proc == kProcDomainSetVcpusFlags ? args.GetU32() : 0;
  const uint32_t flags = (has_flags || proc == kProcDomainOpenConsole) ? args.GetU32() : 0;
  if (!args.Finished()) return absl::OkStatus();  // reported as malformed by the caller
  absl::StatusOr<DomainView> dom = lookup(ref);
  if (!dom.ok()) return dom.status();
  const std::string& name = dom->def.name;
  switch (proc) {
    case kProcDomainUndefine:
      return domains_->Undefine(name);
    case kProcDomainUndefineFlags:  // managed save, snapshots, NVRAM: none exist here, every flag is met
      return domains_->Undefine(name);
    case kProcDomainCreate:
      return domains_->Start(name);
    case kProcDomainCreateWithFlags: {
      // START_PAUSED (1) and AUTODESTROY (2) would change what runs; BYPASS_CACHE, FORCE_BOOT and RESET_NVRAM
      // concern saved state and firmware that do not exist here, so they are met as they are.
      if (flags & 1u) return absl::UnimplementedError("starting paused (VIR_DOMAIN_START_PAUSED)");
      if (flags & 2u) return absl::UnimplementedError("auto-destroy (VIR_DOMAIN_START_AUTODESTROY)");
      if (absl::Status st = domains_->Start(name); !st.ok()) return st;
      absl::StatusOr<DomainView> now = domains_->LookupByName(name);
      if (!now.ok()) return now.status();
      PutDomain(ret, *now);
      return absl::OkStatus();
    }
    case kProcDomainDestroy:
      return domains_->Destroy(name);
    case kProcDomainDestroyFlags:
      return domains_->Destroy(name);
    case kProcDomainShutdown:
      return domains_->Shutdown(name);
    case kProcDomainShutdownFlags: {
      // 0 = the hypervisor's choice; 1 = ACPI power button. Agent, initctl, signal and paravirt are not ours.
      if (flags & ~uint32_t{1}) return absl::UnimplementedError("shutdown modes other than the ACPI power button");
      return domains_->Shutdown(name);
    }
    case kProcDomainReboot: {
      if (flags & ~uint32_t{1}) return absl::UnimplementedError("reboot modes other than the ACPI power button");
      return domains_->Reboot(name);
    }
    case kProcDomainSuspend:
      return domains_->Suspend(name);
    case kProcDomainResume:
      return domains_->Resume(name);
    case kProcDomainGetInfo:
      // state, max memory and memory (KiB), vCPUs, CPU time (ns); chars and shorts travel as 4-byte words
      ret.PutU32(static_cast<uint32_t>(dom->state));
      ret.PutU64(dom->def.memory_kib);
      ret.PutU64(dom->def.memory_kib);
      ret.PutU32(BootVcpus(dom->def));  // present now (live: after any setvcpus)
      ret.PutU64(dom->cpu_time_ns);
      return absl::OkStatus();
    case kProcDomainGetState:
      ret.PutI32(dom->state);
      ret.PutI32(dom->reason);
      return absl::OkStatus();
    case kProcDomainGetXmlDesc:
      // INACTIVE (2): the definition the next start will use; otherwise what runs now.
      ret.PutString((flags & 2u) ? FormatDomainXml(dom->next_def) : FormatDomainXml(dom->def, dom->id));
      return absl::OkStatus();
    case kProcDomainGetOsType:
      ret.PutString("hvm");
      return absl::OkStatus();
    case kProcDomainGetAutostart:
      ret.PutI32(0);
      return absl::OkStatus();
    case kProcDomainIsActive:
      ret.PutI32(dom->id >= 0 ? 1 : 0);
      return absl::OkStatus();
    case kProcDomainIsPersistent:
      ret.PutI32(dom->persistent ? 1 : 0);
      return absl::OkStatus();
    case kProcDomainIsUpdated:
      ret.PutI32(0);
      return absl::OkStatus();
    case kProcDomainHasManagedSaveImage:
      ret.PutI32(0);
      return absl::OkStatus();
    case kProcDomainGetMaxVcpus:
      ret.PutI32(static_cast<int32_t>(dom->def.vcpus));
      return absl::OkStatus();
    case kProcDomainGetVcpusFlags: {
      if (flags & kVcpuGuest) return absl::UnimplementedError("counting the vCPUs the guest agent sees (--guest)");
      // CONFIG: the next start's; LIVE or CURRENT on a running domain: what runs now.
      const bool config = (flags & kAffectConfig) != 0 || ((flags & kAffectLive) == 0 && dom->id < 0);
      if ((flags & kAffectLive) && dom->id < 0) return absl::FailedPreconditionError("domain is not running");
      const DomainDefinition& d = config ? dom->next_def : dom->def;
      ret.PutI32(static_cast<int32_t>((flags & kVcpuMaximum) ? d.vcpus : BootVcpus(d)));
      return absl::OkStatus();
    }
    case kProcDomainSetVcpusFlags: {
      if (flags & kVcpuGuest) return absl::UnimplementedError("setting the vCPUs the guest agent onlines (--guest)");
      if (flags & kVcpuHotpluggable) return absl::UnimplementedError("VIR_DOMAIN_VCPU_HOTPLUGGABLE");
      if (flags & kVcpuMaximum) {
        return absl::UnimplementedError("changing the maximum vCPU count (--maximum): redefine the domain instead");
      }
      const bool current = (flags & (kAffectLive | kAffectConfig)) == 0;
      const bool live = (flags & kAffectLive) != 0 || (current && dom->id >= 0);
      const bool config = (flags & kAffectConfig) != 0 || (current && dom->id < 0);
      return domains_->SetVcpus(name, nvcpus, live, config);
    }
    case kProcDomainGetMaxMemory:
      ret.PutU64(dom->def.memory_kib);
      return absl::OkStatus();
    case kProcDomainGetControlInfo:
      ret.PutU32(0);  // VIR_DOMAIN_CONTROL_OK: there is no monitor to be busy
      ret.PutU32(0);
      ret.PutU64(0);
      return absl::OkStatus();
    case kProcDomainGetVcpus: {
      if (maxinfo < 0 || maxinfo > 2048 || maplen < 0 || maplen > 256) {
        return absl::InvalidArgumentError(absl::StrCat("maxinfo ", maxinfo, " or maplen ", maplen, " out of range"));
      }
      absl::StatusOr<std::vector<VcpuView>> vcpus = domains_->Vcpus(name);
      if (!vcpus.ok()) return vcpus.status();
      const size_t n = std::min<size_t>(vcpus->size(), static_cast<size_t>(maxinfo));
      ret.PutU32(static_cast<uint32_t>(n));
      for (size_t i = 0; i < n; ++i) {
        const VcpuView& v = (*vcpus)[i];
        ret.PutU32(v.vcpu);
        ret.PutI32(v.state);
        ret.PutU64(v.cpu_time_ns);
        ret.PutI32(v.host_cpu);
      }
      // Affinity: a vCPU at home may run on any host CPU; one on an edge on none of this host's.
      const long host_cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
      std::vector<uint8_t> maps(n * static_cast<size_t>(maplen), 0);
      for (size_t i = 0; i < n; ++i) {
        if ((*vcpus)[i].node != "home") continue;
        for (long c = 0; c < host_cpus && c / 8 < maplen; ++c) {
          maps[i * static_cast<size_t>(maplen) + static_cast<size_t>(c / 8)] |= static_cast<uint8_t>(1u << (c % 8));
        }
      }
      ret.PutVarOpaque(maps);
      return absl::OkStatus();
    }
    case kProcDomainOpenConsole: {
      if (console_dev && !console_dev->empty() && *console_dev != "serial0" && *console_dev != "console0") {
        return absl::InvalidArgumentError(absl::StrCat("no console device '", *console_dev, "' (serial0 is COM1)"));
      }
      if (absl::Status st = OpenConsole(conn, client, header, name, flags); !st.ok()) return st;
      // The reply goes out before any stream data: the pump starts once it has been sent.
      MessageHeader reply = header;
      reply.type = MessageType::kReply;
      reply.status = MessageStatus::kOk;
      conn->Send(reply, {});
      std::shared_ptr<ConsoleStream> stream;
      {
        absl::MutexLock lock(&mu_);
        stream = client.streams[header.serial];
      }
      if (stream) stream->Start();
      return absl::CancelledError("already replied");
    }
    default:
      return absl::UnimplementedError(ProcedureName(proc));
  }
}

}  // namespace coalesce::daemon
