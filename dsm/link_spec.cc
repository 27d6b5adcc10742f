#include "dsm/link_spec.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace coalesce::dsm {
namespace {

// Debian's Abseil has its own string_view type.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr uint64_t kMbit = 1'000'000 / 8;  // bytes per second in 1 Mbit/s

LinkEmulation Link(absl::Duration latency, absl::Duration jitter, uint64_t bytes_per_sec) {
  LinkEmulation l;
  l.one_way_latency = latency;
  l.jitter = jitter;
  l.bandwidth_bytes_per_sec = bytes_per_sec;
  return l;
}

const std::array<LinkClass, 7>& Table() {
  static const std::array<LinkClass, 7> table = {{
      {"infiniband", "InfiniBand RDMA, ~1 us one way; 100 Gbit/s, no jitter",
       Link(absl::Microseconds(1), absl::ZeroDuration(), 100'000 * kMbit)},
      {"pcie", "PCIe (CXL-style host link), ~0.9 us one way; 128 Gbit/s, no jitter",
       Link(absl::Nanoseconds(900), absl::ZeroDuration(), 128'000 * kMbit)},
      {"5g-urllc", "5G URLLC, 1 ms one way; 100 Mbit/s, 0.1 ms jitter",
       Link(absl::Milliseconds(1), absl::Microseconds(100), 100 * kMbit)},
      {"wifi6e", "WiFi 6E, ~2 ms one way; 1200 Mbit/s, 0.5 ms jitter",
       Link(absl::Milliseconds(2), absl::Microseconds(500), 1200 * kMbit)},
      {"5g", "5G first hop, 14 ms one way; 300 Mbit/s, 2 ms jitter",
       Link(absl::Milliseconds(14), absl::Milliseconds(2), 300 * kMbit)},
      {"wifi-p90", "typical WiFi at its 90th percentile, 20 ms one way; 200 Mbit/s, 5 ms jitter",
       Link(absl::Milliseconds(20), absl::Milliseconds(5), 200 * kMbit)},
      {"loopback", "no emulation: the host's own TCP loopback, the floor", LinkEmulation{}},
  }};
  return table;
}

absl::Status Bad(std::string_view what, std::string_view spec, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(A(what), ": '", A(spec), "': ", A(why)));
}

// "1Gbit", "300Mbit", "64kbit", "9600bit" (per second) -> bytes per second.
absl::StatusOr<uint64_t> ParseBandwidth(std::string_view v) {
  struct Unit {
    std::string_view suffix;
    double bits;
  };
  static constexpr Unit kUnits[] = {{"Gbit", 1e9}, {"Mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}};
  for (const Unit& u : kUnits) {
    if (!v.ends_with(u.suffix)) continue;
    double n = 0;
    if (!absl::SimpleAtod(A(v.substr(0, v.size() - u.suffix.size())), &n) || !std::isfinite(n) || n <= 0 ||
        n * u.bits > 1e15) {
      break;
    }
    return static_cast<uint64_t>(std::max(1.0, n * u.bits / 8));
  }
  return absl::InvalidArgumentError(absl::StrCat("bandwidth '", A(v), "' is not a rate like 300Mbit or 1.2Gbit"));
}

absl::StatusOr<absl::Duration> ParseDelay(std::string_view key, std::string_view v) {
  absl::Duration d;
  if (!absl::ParseDuration(A(v), &d) || d < absl::ZeroDuration() || d > absl::Seconds(10)) {
    return absl::InvalidArgumentError(
        absl::StrCat(A(key), " '", A(v), "' is not a duration from 0 to 10s like 2ms, 900ns or 1.5ms"));
  }
  return d;
}

std::string FormatBandwidth(uint64_t bytes_per_sec) {
  const uint64_t bits = bytes_per_sec * 8;
  if (bits % 1'000'000'000 == 0) return absl::StrCat(bits / 1'000'000'000, "Gbit");
  if (bits % 1'000'000 == 0) return absl::StrCat(bits / 1'000'000, "Mbit");
  if (bits % 1'000 == 0) return absl::StrCat(bits / 1'000, "kbit");
  return absl::StrCat(bits, "bit");
}

}  // namespace

std::span<const LinkClass> LinkClasses() { return Table(); }

absl::StatusOr<LinkEmulation> ParseLinkSpec(std::string_view spec, std::string_view what) {
  if (spec.empty() || spec == "none") return LinkEmulation{};
  LinkEmulation link;
  std::vector<std::string_view> parts;
  for (absl::string_view p : absl::StrSplit(A(spec), ',')) parts.emplace_back(p.data(), p.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string_view part = parts[i];
    const size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      if (i != 0) return Bad(what, spec, absl::StrCat("'", A(part), "' must be KEY=VALUE (only the first item names a class)"));
      const LinkClass* found = nullptr;
      for (const LinkClass& c : Table()) {
        if (c.name == part) found = &c;
      }
      if (found == nullptr) {
        std::vector<std::string> names;
        for (const LinkClass& c : Table()) names.emplace_back(c.name);
        const std::string why = absl::StrCat("is not a link class (", absl::StrJoin(names, ", "),
                                             ") nor KEY=VALUE (latency, jitter, bandwidth)");
        if (parts.size() == 1) return absl::InvalidArgumentError(absl::StrCat(A(what), ": '", A(spec), "' ", why));
        return Bad(what, spec, absl::StrCat("'", A(part), "' ", why));
      }
      link = found->link;
      continue;
    }
    const std::string_view key = part.substr(0, eq), value = part.substr(eq + 1);
    if (key == "latency" || key == "jitter") {
      absl::StatusOr<absl::Duration> d = ParseDelay(key, value);
      if (!d.ok()) return Bad(what, spec, std::string(d.status().message()));
      (key == "latency" ? link.one_way_latency : link.jitter) = *d;
    } else if (key == "bandwidth") {
      absl::StatusOr<uint64_t> b = ParseBandwidth(value);
      if (!b.ok()) return Bad(what, spec, std::string(b.status().message()));
      link.bandwidth_bytes_per_sec = *b;
    } else {
      return Bad(what, spec, absl::StrCat("unknown setting '", A(key), "' (latency, jitter, bandwidth)"));
    }
  }
  return link;
}

std::string FormatLinkSpec(const LinkEmulation& link) {
  if (!link.enabled()) return "none";
  std::vector<std::string> parts;
  if (link.one_way_latency > absl::ZeroDuration()) {
    parts.push_back(absl::StrCat("latency=", absl::ToInt64Nanoseconds(link.one_way_latency), "ns"));
  }
  if (link.jitter > absl::ZeroDuration()) {
    parts.push_back(absl::StrCat("jitter=", absl::ToInt64Nanoseconds(link.jitter), "ns"));
  }
  if (link.bandwidth_bytes_per_sec > 0) parts.push_back(absl::StrCat("bandwidth=", FormatBandwidth(link.bandwidth_bytes_per_sec)));
  return absl::StrJoin(parts, ",");
}

}  // namespace coalesce::dsm
