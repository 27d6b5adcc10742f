// The raw baseline for the DSM benchmarks, measured in the same run on the same path (one process, TCP loopback,
// TCP_NODELAY, fault handler threads blocked in poll like the DSM's): what a page fault costs with nothing but
// userfaultfd and one 4 KiB TCP round trip, no protocol. Samples can be taken one at a time, so the benchmark
// interleaves them with the DSM's and both see the same machine load.
#pragma once

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include <sys/types.h>

#include "absl/status/statusor.h"

namespace coalesce::dsm::bench {

class RawPath final {
 public:
  // Room for `pages` first-touch samples of each fault kind.
  static absl::StatusOr<std::unique_ptr<RawPath>> Create(uint64_t pages);
  ~RawPath();

  // Each returns one sample in nanoseconds (0 on failure), touching a fresh page where it faults.
  uint64_t UffdFault();    // missing page resolved locally with UFFDIO_COPY
  uint64_t TcpRtt4k();     // 32-byte request, 32-byte header + 4 KiB reply
  uint64_t FaultViaTcp();  // missing page whose handler fetches the 4 KiB by that round trip, then UFFDIO_COPY
  // The kernel work an owner must do before it answers, which the raw round trip above does not: on a written
  // (writable, mapped) page of a write-protect-registered memfd, UFFDIO_WRITEPROTECT and a pread of the page (a
  // downgrade to Shared), and with that a hole punched (a hand-over: its own next access must fault).
  uint64_t OwnerDowngrade();
  uint64_t OwnerHandOver();

 private:
  struct Region;
  RawPath() = default;
  uint64_t OwnerWork(bool punch);
  std::unique_ptr<Region> local_, fetched_, owned_;
  int client_ = -1, server_ = -1, handler_client_ = -1, handler_server_ = -1, stop_ = -1;
  uint64_t next_local_ = 0, next_fetched_ = 0, next_owned_ = 0, pages_ = 0;
  std::thread local_handler_, fetch_handler_;
  std::vector<pid_t> server_pids_;  // the page servers, each in its own process
};

}  // namespace coalesce::dsm::bench
