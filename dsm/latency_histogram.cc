#include "dsm/latency_histogram.h"

#include <bit>

#include "absl/strings/str_format.h"

namespace coalesce::dsm {

// Values are bucketed in units of 1/8 us (125 ns): octave = floor(log2(units)), then 8 linear steps in it.
int LatencyHistogram::BucketOf(uint64_t nanos) {
  uint64_t units = nanos / 125;
  if (units < kSubBuckets) return static_cast<int>(units);
  int octave = 63 - std::countl_zero(units);  // >= 3
  int shift = octave - 3;
  int sub = static_cast<int>((units >> shift) & (kSubBuckets - 1));
  int bucket = (octave - 2) * kSubBuckets + sub;
  return bucket < kBuckets ? bucket : kBuckets - 1;
}

uint64_t LatencyHistogram::BucketUpperNanos(int bucket) {
  if (bucket < kSubBuckets) return static_cast<uint64_t>(bucket + 1) * 125;
  int octave = bucket / kSubBuckets + 2;
  int sub = bucket % kSubBuckets;
  uint64_t units = (static_cast<uint64_t>(kSubBuckets + sub + 1)) << (octave - 3);
  return units * 125;
}

void LatencyHistogram::Record(uint64_t nanos) {
  buckets_[BucketOf(nanos)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(nanos, std::memory_order_relaxed);
  uint64_t prev = max_.load(std::memory_order_relaxed);
  while (nanos > prev && !max_.compare_exchange_weak(prev, nanos, std::memory_order_relaxed)) {
  }
}

uint64_t LatencyHistogram::PercentileNanos(double pct) const {
  uint64_t total = count();
  if (total == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(pct / 100.0 * static_cast<double>(total));
  if (rank >= total) rank = total - 1;
  uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += buckets_[b].load(std::memory_order_relaxed);
    if (seen > rank) return BucketUpperNanos(b);
  }
  return BucketUpperNanos(kBuckets - 1);
}

std::string LatencyHistogram::Summary() const {
  return absl::StrFormat("n=%u p50=%.1fus p90=%.1fus p99=%.1fus max=%.1fus", count(), PercentileNanos(50) / 1e3,
                         PercentileNanos(90) / 1e3, PercentileNanos(99) / 1e3, max_nanos() / 1e3);
}

}  // namespace coalesce::dsm
