// Lock-free latency histogram: log-linear buckets (8 per power of two) from 1 us to ~70 s, so percentiles are
// within ~9% of the true value. Writers (the DSM threads) and readers (stats dumps) never block each other.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace coalesce::dsm {

class LatencyHistogram final {
 public:
  static constexpr int kSubBuckets = 8;
  static constexpr int kOctaves = 27;
  static constexpr int kBuckets = kSubBuckets * kOctaves;

  void Record(uint64_t nanos);
  [[nodiscard]] uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // Approximate percentile (0..100) in nanoseconds: the upper bound of the bucket that holds it; 0 if empty.
  [[nodiscard]] uint64_t PercentileNanos(double pct) const;
  [[nodiscard]] uint64_t max_nanos() const { return max_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t sum_nanos() const { return sum_.load(std::memory_order_relaxed); }
  // "n=... p50=...us p99=...us max=...us"
  [[nodiscard]] std::string Summary() const;

  // Exposed for tests: the bucket a value falls into and that bucket's upper bound.
  static int BucketOf(uint64_t nanos);
  static uint64_t BucketUpperNanos(int bucket);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_{0};
  std::atomic<uint64_t> max_{0};
};

}  // namespace coalesce::dsm
