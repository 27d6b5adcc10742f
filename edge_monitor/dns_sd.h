// DNS-SD over multicast DNS on the local network (RFC 6763 over RFC 6762): edge agents announce themselves as
// `_coalesce._tcp` services with TXT records for their capacity, load and battery (`coalesce edge --announce`),
// and homes browse for them (`coalesce run --discover dns-sd`, `coalesce discover`).
//
// Built on avahi-core, Avahi's embeddable mDNS responder, rather than the avahi-daemon client library: an edge
// host or a test's network namespace then needs no system daemon and no D-Bus. Each announcer or browser runs
// its own responder on a thread of its own (Avahi's threaded poll); IPv4 only, on every interface that is up and
// multicast-capable (never loopback: mDNS does not use it). avahi-core shares UDP port 5353 with any other mDNS
// stack on the host (SO_REUSEADDR), so a system avahi-daemon may run beside it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace coalesce {

inline constexpr char kDnsSdServiceType[] = "_coalesce._tcp";

struct DnsSdService {
  std::string instance;          // the service instance name, unique on the link
  std::string host_name;         // e.g. coalesce-edge-7001-1234.local
  std::string address;           // IPv4, dotted
  uint16_t port = 0;
  std::vector<std::string> txt;  // "key=value" strings, as published
  [[nodiscard]] std::string agent_address() const { return address + ":" + std::to_string(port); }
  // The value of TXT key `key`, or "" if absent.
  [[nodiscard]] std::string TxtValue(const std::string& key) const;
};

// Publishes one service for as long as it lives; destroying it withdraws the service (goodbye packets).
class DnsSdAnnouncer {
 public:
  // Starts announcing `instance` (renamed "instance #2" and so on if the name is taken on the link) at `port`
  // with `txt` (each string at most 255 bytes). Returns once the responder runs; the announcement itself is
  // established about a second later, after mDNS probing (logged). Errors name what Avahi refused.
  static absl::StatusOr<std::unique_ptr<DnsSdAnnouncer>> Start(const std::string& instance, uint16_t port,
                                                                std::vector<std::string> txt);
  ~DnsSdAnnouncer();
  DnsSdAnnouncer(const DnsSdAnnouncer&) = delete;
  DnsSdAnnouncer& operator=(const DnsSdAnnouncer&) = delete;

  // Replaces the TXT record (a no-op when unchanged). Any thread.
  absl::Status UpdateTxt(std::vector<std::string> txt);
  // The name it is announced under now (after any rename), and whether the announcement is established.
  [[nodiscard]] std::string instance() const;
  [[nodiscard]] bool established() const;

  struct State;

 private:
  explicit DnsSdAnnouncer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Browses the local network for `window` and returns every `_coalesce._tcp` service resolved in that time
// (those that said goodbye left out), sorted by instance name. Errors only when no responder can run.
absl::StatusOr<std::vector<DnsSdService>> BrowseDnsSd(absl::Duration window);

}  // namespace coalesce
