#include "edge_monitor/dns_sd.h"

#include <avahi-common/address.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/strlst.h>
#include <avahi-common/thread-watch.h>
#include <avahi-core/core.h>
#include <avahi-core/log.h>
#include <avahi-core/lookup.h>
#include <avahi-core/publish.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"

namespace coalesce {
namespace {

// Avahi's own messages (interfaces joined, probing) go to our log: its warnings as warnings, the rest as debug.
void RouteAvahiLog() {
  static std::once_flag once;
  std::call_once(once, [] {
    avahi_set_log_function([](AvahiLogLevel level, const char* text) {
      if (level <= AVAHI_LOG_WARN) {
        LOG_WARN("avahi: %s", text);
      } else {
        LOG_DEBUG("avahi: %s", text);
      }
    });
  });
}

// Avahi keeps a string list last first (each add prepends) and writes it to the wire reversed: added in order,
// the strings go out in order; read back from the wire, they come last first.
AvahiStringList* TxtList(const std::vector<std::string>& txt) {
  AvahiStringList* list = nullptr;
  for (const std::string& t : txt) list = avahi_string_list_add(list, t.c_str());
  return list;
}

std::vector<std::string> TxtStrings(AvahiStringList* list) {
  std::vector<std::string> out;
  for (AvahiStringList* l = list; l != nullptr; l = avahi_string_list_get_next(l)) {
    out.emplace_back(reinterpret_cast<const char*>(avahi_string_list_get_text(l)), avahi_string_list_get_size(l));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// One responder: Avahi's threaded poll (its thread runs every callback with the poll's lock held) and a server.
class Responder {
 public:
  // `host_name`: this responder's own name on the link (A records when publishing). Callbacks may run before
  // this returns (the server's first state changes), on the calling thread.
  static absl::StatusOr<std::unique_ptr<Responder>> Start(const std::string& host_name, bool publish,
                                                          AvahiServerCallback callback, void* userdata) {
    RouteAvahiLog();
    auto r = std::unique_ptr<Responder>(new Responder());
    r->poll_ = avahi_threaded_poll_new();
    if (r->poll_ == nullptr) return absl::ResourceExhaustedError("avahi: cannot create its event loop");
    AvahiServerConfig config;
    avahi_server_config_init(&config);
    config.host_name = avahi_strdup(host_name.c_str());
    config.use_ipv4 = 1;
    config.use_ipv6 = 0;
    config.publish_hinfo = 0;
    config.publish_workstation = 0;
    config.publish_domain = 0;
    // No automatic address records: they come with reverse (PTR) records, and two responders on one address
    // (two agents on a host, or an agent beside avahi-daemon) would fight over the PTR record, renaming
    // themselves forever. The announcer publishes its A records itself, without the reverse (State::Publish).
    config.publish_addresses = 0;
    config.disable_publishing = publish ? 0 : 1;
    config.disallow_other_stacks = 0;            // share port 5353 with a system avahi-daemon, or another agent
    int error = 0;
    r->server_ = avahi_server_new(avahi_threaded_poll_get(r->poll_), &config, callback, userdata, &error);
    avahi_server_config_free(&config);
    if (r->server_ == nullptr) return absl::UnavailableError(absl::StrFormat("avahi: %s", avahi_strerror(error)));
    if (avahi_threaded_poll_start(r->poll_) < 0) return absl::ResourceExhaustedError("avahi: cannot start its thread");
    r->started_ = true;
    return r;
  }
  ~Responder() {
    if (started_) avahi_threaded_poll_stop(poll_);
    if (server_ != nullptr) avahi_server_free(server_);
    if (poll_ != nullptr) avahi_threaded_poll_free(poll_);
  }
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  void Lock() { avahi_threaded_poll_lock(poll_); }
  void Unlock() { avahi_threaded_poll_unlock(poll_); }
  [[nodiscard]] AvahiServer* server() const { return server_; }

 private:
  Responder() = default;
  AvahiThreadedPoll* poll_ = nullptr;
  AvahiServer* server_ = nullptr;
  bool started_ = false;
};

class ResponderLock {
 public:
  explicit ResponderLock(Responder& r) : r_(r) { r_.Lock(); }
  ~ResponderLock() { r_.Unlock(); }
  ResponderLock(const ResponderLock&) = delete;
  ResponderLock& operator=(const ResponderLock&) = delete;

 private:
  Responder& r_;
};

// A name for this responder on the link: unique per process (two agents may share a host) and, with a random
// part, across hosts that share a host name and pid (cloned images, containers), where a collision on the
// address record would otherwise rename the service again and again.
std::string ResponderHostName(const char* role) {
  char host[64] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::random_device random;
  std::string name = absl::StrFormat("coalesce-%s-%d-%04x-%s", role, ::getpid(), random() & 0xffff, host);
  for (char& c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') c = '-';
  }
  return name.substr(0, 63);
}

}  // namespace

std::string DnsSdService::TxtValue(const std::string& key) const {
  for (const std::string& kv : txt) {
    if (absl::StartsWith(kv, key + "=")) return kv.substr(key.size() + 1);
  }
  return "";
}

// Everything the poll thread's callbacks touch: read and written only with the responder's lock held.
struct DnsSdAnnouncer::State {
  std::string instance;
  uint16_t port = 0;
  std::vector<std::string> txt;
  AvahiSEntryGroup* group = nullptr;
  bool established = false;
  std::unique_ptr<Responder> responder;  // set once Start has it; callbacks use the server they are given

  static void OnServer(AvahiServer* s, AvahiServerState state, void* userdata) {
    auto* st = static_cast<State*>(userdata);
    switch (state) {
      case AVAHI_SERVER_RUNNING:
        if (st->group == nullptr || avahi_s_entry_group_is_empty(st->group)) st->Publish(s);
        break;
      case AVAHI_SERVER_COLLISION: {
        // Another host on the link uses our host name: take the next one ("name-2") and publish again.
        char* next = avahi_alternative_host_name(avahi_server_get_host_name(s));
        LOG_WARN("dns-sd: host name %s is taken on the link, now %s", avahi_server_get_host_name(s), next);
        avahi_server_set_host_name(s, next);
        avahi_free(next);
        break;
      }
      case AVAHI_SERVER_REGISTERING:
        if (st->group != nullptr) avahi_s_entry_group_reset(st->group);
        st->established = false;
        break;
      case AVAHI_SERVER_FAILURE:
        LOG_WARN("dns-sd: the responder failed: %s", avahi_strerror(avahi_server_errno(s)));
        break;
      default:
        break;
    }
  }

  static void OnGroup(AvahiServer* s, AvahiSEntryGroup*, AvahiEntryGroupState state, void* userdata) {
    auto* st = static_cast<State*>(userdata);
    if (state == AVAHI_ENTRY_GROUP_ESTABLISHED) {
      st->established = true;
      LOG_INFO("dns-sd: announced as '%s' (%s, port %u)", st->instance, kDnsSdServiceType, st->port);
    } else if (state == AVAHI_ENTRY_GROUP_COLLISION) {
      st->Rename();
      avahi_s_entry_group_reset(st->group);
      st->Publish(s);
    } else if (state == AVAHI_ENTRY_GROUP_FAILURE) {
      LOG_WARN("dns-sd: announcing '%s' failed: %s", st->instance, avahi_strerror(avahi_server_errno(s)));
    }
  }

  void Rename() {
    char* next = avahi_alternative_service_name(instance.c_str());
    LOG_WARN("dns-sd: service name '%s' is taken on the link, now '%s'", instance, next);
    instance = next;
    avahi_free(next);
  }

  // This responder's host name -> each IPv4 address of an interface mDNS runs on (up, multicast, not
  // loopback), on that interface only, with no reverse record: what a resolver needs to reach the service.
  void PublishAddresses(AvahiServer* s) {
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) {
      LOG_WARN("dns-sd: listing the interfaces: %s", std::strerror(errno));
      return;
    }
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
          !(i->ifa_flags & IFF_MULTICAST) || (i->ifa_flags & IFF_LOOPBACK)) {
        continue;
      }
      AvahiAddress address{};
      address.proto = AVAHI_PROTO_INET;
      address.data.ipv4.address = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr;
      const int index = static_cast<int>(::if_nametoindex(i->ifa_name));
      if (const int r = avahi_server_add_address(s, group, index, AVAHI_PROTO_INET, AVAHI_PUBLISH_NO_REVERSE,
                                                 avahi_server_get_host_name_fqdn(s), &address);
          r < 0) {
        LOG_WARN("dns-sd: publishing %s's address: %s", i->ifa_name, avahi_strerror(r));
      }
    }
    ::freeifaddrs(list);
  }

  void Publish(AvahiServer* s) {
    if (group == nullptr) group = avahi_s_entry_group_new(s, &State::OnGroup, this);
    if (group == nullptr) {
      LOG_WARN("dns-sd: %s", avahi_strerror(avahi_server_errno(s)));
      return;
    }
    PublishAddresses(s);
    for (int attempt = 0; attempt < 10; ++attempt) {
      AvahiStringList* list = TxtList(txt);
      const int r = avahi_server_add_service_strlst(s, group, AVAHI_IF_UNSPEC, AVAHI_PROTO_INET, AvahiPublishFlags(0),
                                                    instance.c_str(), kDnsSdServiceType, nullptr, nullptr, port, list);
      avahi_string_list_free(list);
      if (r == AVAHI_ERR_COLLISION) {  // a service of ours (or another process's on this host) has the name
        Rename();
        continue;
      }
      if (r < 0) {
        LOG_WARN("dns-sd: announcing '%s': %s", instance, avahi_strerror(r));
        return;
      }
      if (const int c = avahi_s_entry_group_commit(group); c < 0) {
        LOG_WARN("dns-sd: announcing '%s': %s", instance, avahi_strerror(c));
      }
      return;
    }
  }
};

DnsSdAnnouncer::DnsSdAnnouncer(std::unique_ptr<State> state) : state_(std::move(state)) {}

absl::StatusOr<std::unique_ptr<DnsSdAnnouncer>> DnsSdAnnouncer::Start(const std::string& instance, uint16_t port,
                                                                      std::vector<std::string> txt) {
  if (instance.empty() || instance.size() > 63) {
    return absl::InvalidArgumentError(absl::StrFormat("DNS-SD instance name '%s': 1 to 63 bytes", instance));
  }
  for (const std::string& t : txt) {
    if (t.empty() || t.size() > 255) {
      return absl::InvalidArgumentError(absl::StrFormat("DNS-SD TXT string '%s': 1 to 255 bytes", t));
    }
  }
  auto state = std::make_unique<State>();
  state->instance = instance;
  state->port = port;
  state->txt = std::move(txt);
  absl::StatusOr<std::unique_ptr<Responder>> responder =
      Responder::Start(ResponderHostName("edge"), /*publish=*/true, &State::OnServer, state.get());
  if (!responder.ok()) return responder.status();
  {
    ResponderLock lock(**responder);
    state->responder = *std::move(responder);
  }
  return std::unique_ptr<DnsSdAnnouncer>(new DnsSdAnnouncer(std::move(state)));
}

DnsSdAnnouncer::~DnsSdAnnouncer() {
  Responder& r = *state_->responder;
  {
    ResponderLock lock(r);
    // Withdrawn while the loop still runs, so that its goodbye packets (TTL 0) go out: browsers drop the service
    // at once rather than when its records expire.
    if (state_->group != nullptr) avahi_s_entry_group_free(state_->group);
    state_->group = nullptr;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  state_->responder.reset();
}

absl::Status DnsSdAnnouncer::UpdateTxt(std::vector<std::string> txt) {
  Responder& r = *state_->responder;
  ResponderLock lock(r);
  if (txt == state_->txt) return absl::OkStatus();
  state_->txt = std::move(txt);
  if (state_->group == nullptr || avahi_s_entry_group_is_empty(state_->group)) return absl::OkStatus();  // at RUNNING
  AvahiStringList* list = TxtList(state_->txt);
  const int rc = avahi_server_update_service_txt_strlst(r.server(), state_->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_INET,
                                                        AvahiPublishFlags(0), state_->instance.c_str(),
                                                        kDnsSdServiceType, nullptr, list);
  avahi_string_list_free(list);
  if (rc < 0) return absl::UnavailableError(absl::StrFormat("avahi: updating the TXT record: %s", avahi_strerror(rc)));
  return absl::OkStatus();
}

std::string DnsSdAnnouncer::instance() const {
  ResponderLock lock(*state_->responder);
  return state_->instance;
}

bool DnsSdAnnouncer::established() const {
  ResponderLock lock(*state_->responder);
  return state_->established;
}

namespace {

struct BrowseState {
  AvahiServer* server = nullptr;
  AvahiSServiceBrowser* browser = nullptr;
  std::map<std::string, DnsSdService> found;  // by instance name
  std::string error;

  static void OnServer(AvahiServer* s, AvahiServerState state, void* userdata) {
    auto* st = static_cast<BrowseState*>(userdata);
    st->server = s;
    if (state == AVAHI_SERVER_RUNNING && st->browser == nullptr) {
      st->browser = avahi_s_service_browser_new(s, AVAHI_IF_UNSPEC, AVAHI_PROTO_INET, kDnsSdServiceType, nullptr,
                                                AvahiLookupFlags(0), &BrowseState::OnBrowse, st);
      if (st->browser == nullptr) st->error = avahi_strerror(avahi_server_errno(s));
    } else if (state == AVAHI_SERVER_FAILURE) {
      st->error = avahi_strerror(avahi_server_errno(s));
    }
  }

  static void OnBrowse(AvahiSServiceBrowser*, AvahiIfIndex interface, AvahiProtocol protocol,
                       AvahiBrowserEvent event, const char* name, const char* type, const char* domain,
                       AvahiLookupResultFlags, void* userdata) {
    auto* st = static_cast<BrowseState*>(userdata);
    if (event == AVAHI_BROWSER_NEW) {
      AvahiServer* s = st->server;
      if (avahi_s_service_resolver_new(s, interface, protocol, name, type, domain, AVAHI_PROTO_INET,
                                       AvahiLookupFlags(0), &BrowseState::OnResolve, st) == nullptr) {
        LOG_WARN("dns-sd: resolving '%s': %s", name, avahi_strerror(avahi_server_errno(s)));
      }
    } else if (event == AVAHI_BROWSER_REMOVE) {
      st->found.erase(name);
    } else if (event == AVAHI_BROWSER_FAILURE) {
      st->error = "the service browser failed";
    }
  }

  static void OnResolve(AvahiSServiceResolver* r, AvahiIfIndex, AvahiProtocol, AvahiResolverEvent event,
                        const char* name, const char*, const char*, const char* host_name, const AvahiAddress* a,
                        uint16_t port, AvahiStringList* txt, AvahiLookupResultFlags, void* userdata) {
    auto* st = static_cast<BrowseState*>(userdata);
    if (event == AVAHI_RESOLVER_FOUND && a != nullptr && a->proto == AVAHI_PROTO_INET) {
      char address[AVAHI_ADDRESS_STR_MAX];
      avahi_address_snprint(address, sizeof(address), a);
      st->found[name] = DnsSdService{.instance = name, .host_name = host_name, .address = address, .port = port,
                                     .txt = TxtStrings(txt)};
    }
    avahi_s_service_resolver_free(r);
  }
};

}  // namespace

absl::StatusOr<std::vector<DnsSdService>> BrowseDnsSd(absl::Duration window) {
  BrowseState state;
  absl::StatusOr<std::unique_ptr<Responder>> responder =
      Responder::Start(ResponderHostName("browse"), /*publish=*/false, &BrowseState::OnServer, &state);
  if (!responder.ok()) return responder.status();
  absl::SleepFor(window);
  std::vector<DnsSdService> out;
  std::string error;
  {
    ResponderLock lock(**responder);
    for (auto& [name, service] : state.found) out.push_back(service);
    error = state.error;
  }
  responder->reset();  // the browser and any resolver still running go with the server
  if (out.empty() && !error.empty()) return absl::UnavailableError(absl::StrFormat("avahi: %s", error));
  return out;
}

}  // namespace coalesce
