#include <catch2/catch.hpp>

#include "dsm/dsm_stats.h"
#include "dsm/latency_histogram.h"
#include "dsm/link_emulation.h"
#include "dsm/wire_format.h"

namespace coalesce::dsm {
namespace {

TEST_CASE("wire header validation", "[dsm][wire]") {
  WireHeader h = MakeHeader(MsgType::kReadReq, 3, 17);
  REQUIRE(ValidateHeader(h).ok());
  WireHeader bad = h;
  bad.magic = 0x1234;
  REQUIRE_FALSE(ValidateHeader(bad).ok());
  bad = h;
  bad.version = kWireVersion + 1;
  REQUIRE(absl::IsFailedPrecondition(ValidateHeader(bad)));
  bad = h;
  bad.type = 0;
  REQUIRE_FALSE(ValidateHeader(bad).ok());
  bad.type = kMaxMsgType + 1;
  REQUIRE_FALSE(ValidateHeader(bad).ok());
  bad = h;
  bad.src_node = kMaxNodes;
  REQUIRE_FALSE(ValidateHeader(bad).ok());
  bad = h;
  bad.payload_len = 1;  // requests carry nothing
  REQUIRE_FALSE(ValidateHeader(bad).ok());
  WireHeader page = MakeHeader(MsgType::kPageData, 1, 2, 0, 0, kPageSize);
  REQUIRE(ValidateHeader(page).ok());
  page.payload_len = kPageSize - 1;
  REQUIRE_FALSE(ValidateHeader(page).ok());
  page.flags = kFlagNoData;
  page.payload_len = 0;
  REQUIRE(ValidateHeader(page).ok());
  // A zero page travels as a flag: no payload, and never together with NO_DATA.
  page.flags = kFlagZeroPage;
  REQUIRE(ValidateHeader(page).ok());
  page.payload_len = kPageSize;
  REQUIRE_FALSE(ValidateHeader(page).ok());
  page.flags = kFlagZeroPage | kFlagNoData;
  page.payload_len = 0;
  REQUIRE_FALSE(ValidateHeader(page).ok());
  WireHeader evict = MakeHeader(MsgType::kEvictReq, 1, 2, 0, kFlagZeroPage, 0);
  REQUIRE(ValidateHeader(evict).ok());
  evict.payload_len = kPageSize;
  REQUIRE_FALSE(ValidateHeader(evict).ok());
  // A read request asks for at most kMaxReadAhead pages ahead.
  WireHeader read = MakeHeader(MsgType::kReadReq, 1, 2, kMaxReadAhead);
  REQUIRE(ValidateHeader(read).ok());
  read.arg = kMaxReadAhead + 1;
  REQUIRE_FALSE(ValidateHeader(read).ok());
  WireHeader user = MakeHeader(MsgType::kUser, 1, 0, 0, 0, kMaxPayload);
  REQUIRE(ValidateHeader(user).ok());
  user.payload_len = kMaxPayload + 1;
  REQUIRE_FALSE(ValidateHeader(user).ok());
  REQUIRE(std::string(MsgTypeName(MsgType::kInvalidate)) == "INVALIDATE");
}

TEST_CASE("latency histogram buckets and percentiles", "[dsm][stats]") {
  uint64_t prev = 0;
  for (int b = 0; b < LatencyHistogram::kBuckets; ++b) {
    REQUIRE(LatencyHistogram::BucketUpperNanos(b) > prev);
    prev = LatencyHistogram::BucketUpperNanos(b);
  }
  for (uint64_t v : {0ull, 100ull, 999ull, 1000ull, 12345ull, 999999ull, 50000000ull}) {
    int b = LatencyHistogram::BucketOf(v);
    REQUIRE(LatencyHistogram::BucketUpperNanos(b) > v);
    if (b > 0) REQUIRE(LatencyHistogram::BucketUpperNanos(b - 1) <= v);
  }
  LatencyHistogram h;
  REQUIRE(h.PercentileNanos(50) == 0);
  for (int i = 1; i <= 1000; ++i) h.Record(static_cast<uint64_t>(i) * 1000);  // 1..1000 us
  REQUIRE(h.count() == 1000);
  const double p50 = static_cast<double>(h.PercentileNanos(50));
  const double p99 = static_cast<double>(h.PercentileNanos(99));
  REQUIRE(p50 >= 500e3);
  REQUIRE(p50 <= 500e3 * 1.13);
  REQUIRE(p99 >= 990e3);
  REQUIRE(p99 <= 990e3 * 1.13);
  REQUIRE(h.max_nanos() == 1000000);
}

TEST_CASE("hot pages are the most faulted, hottest first", "[dsm][stats]") {
  DsmStats s(100);
  for (int i = 0; i < 5; ++i) s.CountPageFault(7);
  for (int i = 0; i < 3; ++i) s.CountPageFault(42);
  s.CountPageFault(9);
  s.CountPageFault(1000);  // out of range: ignored
  auto hot = s.HotPages(2);
  REQUIRE(hot.size() == 2);
  REQUIRE(hot[0].page == 7);
  REQUIRE(hot[0].faults == 5);
  REQUIRE(hot[1].page == 42);
  REQUIRE(s.HotPages(10).size() == 3);
  REQUIRE(s.Format(3).find("hottest pages") != std::string::npos);
}

TEST_CASE("link shaper: latency, bandwidth, jitter without reordering", "[dsm][link]") {
  const absl::Time t0 = absl::UnixEpoch();
  LinkEmulation l;
  REQUIRE_FALSE(l.enabled());
  l.one_way_latency = absl::Milliseconds(2);
  LinkShaper a(l);
  REQUIRE(a.ReleaseTime(t0, 100) == t0 + absl::Milliseconds(2));
  l.bandwidth_bytes_per_sec = 1'000'000;  // 1 MB/s: 4000 bytes take 4 ms on the wire
  LinkShaper b(l);
  REQUIRE(b.ReleaseTime(t0, 4000) == t0 + absl::Milliseconds(6));
  REQUIRE(b.ReleaseTime(t0, 4000) == t0 + absl::Milliseconds(10));  // queued behind the first
  l.bandwidth_bytes_per_sec = 0;
  l.jitter = absl::Milliseconds(5);
  LinkShaper c(l, 42);
  absl::Time last = absl::InfinitePast();
  for (int i = 0; i < 200; ++i) {
    absl::Time now = t0 + absl::Microseconds(100 * i);
    absl::Time r = c.ReleaseTime(now, 64);
    REQUIRE(r >= now + absl::Milliseconds(2));
    REQUIRE(r <= now + absl::Milliseconds(7));
    REQUIRE(r >= last);
    last = r;
  }
}

}  // namespace
}  // namespace coalesce::dsm
