// Link emulation as users write it (`coalesce run --link`, the profile, the agent's runtime flag): a named link
// class from the table below, optionally adjusted, or explicit settings.
//
//   wifi6e                                   the class as tabulated
//   5g,jitter=3ms                            a class with one setting changed
//   latency=2ms,jitter=200us,bandwidth=1Gbit explicit (latency is one way; bandwidth in bit/s: bit, kbit, Mbit, Gbit)
//   none | loopback                          no emulation (the machine's own loopback is the floor)
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "dsm/link_emulation.h"

namespace coalesce::dsm {

struct LinkClass {
  std::string_view name;
  std::string_view description;  // where the one-way latency comes from, and what the other figures assume
  LinkEmulation link;
};

// The link classes the benchmark harness sweeps: one-way latencies from the project's seed table; bandwidth and
// jitter are typical figures for each medium (stated per class in docs/BENCHMARKS.md), adjustable per run.
std::span<const LinkClass> LinkClasses();

// `what` names the value in errors ("--link: 'wifi7' is not a link class or setting (...)").
absl::StatusOr<LinkEmulation> ParseLinkSpec(std::string_view spec, std::string_view what = "link");

// The explicit form ParseLinkSpec reads back to the same settings ("none" when emulation is off).
std::string FormatLinkSpec(const LinkEmulation& link);

}  // namespace coalesce::dsm
