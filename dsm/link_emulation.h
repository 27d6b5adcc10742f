// Optional link emulation in the DSM transport (this kernel has no netem): one-way latency, uniform jitter and a
// bandwidth cap, applied by the sending side. Off by default. Messages keep their order on a link (jitter never
// reorders: a message is released no earlier than the one before it), which the protocol does not need but a
// TCP link would give anyway.
#pragma once

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace coalesce::dsm {

struct LinkEmulation {
  absl::Duration one_way_latency = absl::ZeroDuration();
  absl::Duration jitter = absl::ZeroDuration();  // extra delay drawn uniformly from [0, jitter]
  uint64_t bandwidth_bytes_per_sec = 0;           // 0: unlimited
  [[nodiscard]] bool enabled() const {
    return one_way_latency > absl::ZeroDuration() || jitter > absl::ZeroDuration() || bandwidth_bytes_per_sec > 0;
  }
};

// Computes when each message may leave. Not thread-safe: one per link, used by its sender.
class LinkShaper final {
 public:
  explicit LinkShaper(const LinkEmulation& link, uint64_t seed = 1) : link_(link), rng_(seed) {}
  // `now` is when the message was handed to the link; returns when it may be written to the socket.
  absl::Time ReleaseTime(absl::Time now, uint64_t bytes);
  // A new link from now on (the link changes while the VM runs: `coalesce ctl link`); what is on the wire stays.
  void SetLink(const LinkEmulation& link) { link_ = link; }
  // When the emulated wire is free for the next message (the sender picks it then, fault lane first).
  [[nodiscard]] absl::Time wire_free() const { return wire_free_; }

 private:
  LinkEmulation link_;
  std::mt19937_64 rng_;
  absl::Time wire_free_ = absl::InfinitePast();  // when the emulated wire finishes the previous message
  absl::Time last_release_ = absl::InfinitePast();
};

}  // namespace coalesce::dsm
