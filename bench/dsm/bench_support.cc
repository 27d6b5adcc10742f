#include "bench/dsm/bench_support.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace coalesce::dsm::bench {

uint64_t NowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

Summary Summarize(std::vector<uint64_t> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))]) /
           1e3;
  };
  return Summary{at(0.5), at(0.99)};
}

void WriteLine(int fd, const std::string& s) {
  std::string l = s + "\n";
  [[maybe_unused]] ssize_t w = ::write(fd, l.data(), l.size());
}

std::string ReadLine(int fd) {
  std::string l;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') l.push_back(c);
  return l;
}

DsmNodeConfig BenchNodeConfig(NodeId id) {
  DsmNodeConfig c;
  c.self = id;
  c.listen_address = "127.0.0.1";
  c.on_error = [id](const absl::Status& s) {
    std::fprintf(stderr, "node %u: DSM error: %s\n", id, s.ToString().c_str());
    ::_exit(1);
  };
  return c;
}

}  // namespace coalesce::dsm::bench
