// Helpers shared by the DSM benchmarks: a monotonic clock, median/p99 summaries, a word of a DSM page, and the
// line protocol over pipes between the measuring process and its forked node processes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsm/dsm_node.h"

namespace coalesce::dsm::bench {

uint64_t NowNs();

struct Summary {
  double median_us = 0, p99_us = 0;
};
Summary Summarize(std::vector<uint64_t> samples_ns);

inline volatile uint64_t* Word(DsmNode& n, uint64_t page) {
  return reinterpret_cast<volatile uint64_t*>(n.data() + page * kPageSize);
}

void WriteLine(int fd, const std::string& s);
std::string ReadLine(int fd);

// A node on 127.0.0.1 whose first DSM error ends the process (a benchmark has no way to go on).
DsmNodeConfig BenchNodeConfig(NodeId id);

}  // namespace coalesce::dsm::bench
