#include "dsm/link_emulation.h"

#include <algorithm>

namespace coalesce::dsm {

absl::Time LinkShaper::ReleaseTime(absl::Time now, uint64_t bytes) {
  absl::Time start = std::max(now, wire_free_);
  absl::Duration serialization = absl::ZeroDuration();
  if (link_.bandwidth_bytes_per_sec > 0) {
    serialization = absl::Nanoseconds(static_cast<int64_t>(static_cast<double>(bytes) * 1e9 /
                                                           static_cast<double>(link_.bandwidth_bytes_per_sec)));
  }
  wire_free_ = start + serialization;
  absl::Duration extra = absl::ZeroDuration();
  if (link_.jitter > absl::ZeroDuration()) {
    std::uniform_int_distribution<int64_t> d(0, absl::ToInt64Nanoseconds(link_.jitter));
    extra = absl::Nanoseconds(d(rng_));
  }
  absl::Time release = std::max(wire_free_ + link_.one_way_latency + extra, last_release_);
  last_release_ = release;
  return release;
}

}  // namespace coalesce::dsm
