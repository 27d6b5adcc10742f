// How a device whose back end reads and writes guest RAM outside the vCPUs (qemu-storage-daemon, through its own
// mapping of the memfd) keeps that RAM coherent. Alone, guest RAM is local and nothing is needed (NoDmaGuard).
// In a coalesced guest the home pins the pages of a request in the DSM for as long as the back end may touch
// them (docs/DSM.md, "Devices that touch guest RAM").
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace coalesce::virtio {

class DmaGuard {
 public:
  virtual ~DmaGuard() = default;
  // [gpa, gpa + len) is current here and stays here until Release. May block (page transfers).
  virtual absl::Status Acquire(uint64_t gpa, uint64_t len) = 0;
  virtual void Release(uint64_t gpa, uint64_t len) = 0;
};

// Guest RAM is all on this node: nothing to pull in or hold.
class LocalDmaGuard final : public DmaGuard {
 public:
  absl::Status Acquire(uint64_t, uint64_t) override { return absl::OkStatus(); }
  void Release(uint64_t, uint64_t) override {}
};

}  // namespace coalesce::virtio
