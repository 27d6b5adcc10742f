// The DmaGuard of a coalesced home: a request's buffer pages are pinned in the home's DSM node (brought home and
// kept Modified there, peers' requests waiting) while qemu-storage-daemon may read or write them through its own
// mapping of the memfd, which the DSM cannot see. docs/DSM.md, "Devices that touch guest RAM".
#pragma once

#include <cstdint>
#include <functional>

#include "devmodel/virtio/dma_guard.h"
#include "dsm/dsm_node.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

class DsmDmaGuard final : public virtio::DmaGuard {
 public:
  // `dsm` returns the home's node, or null before the data plane exists (no vCPU runs then) and after it stopped.
  DsmDmaGuard(const GuestMemory* memory, std::function<dsm::DsmNode*()> dsm)
      : memory_(memory), dsm_(std::move(dsm)) {}

  absl::Status Acquire(uint64_t gpa, uint64_t len) override;
  void Release(uint64_t gpa, uint64_t len) override;

 private:
  // The DSM pages (memfd offset / 4 KiB) of [gpa, gpa + len), which lies in one RAM region.
  absl::StatusOr<std::pair<uint64_t, uint64_t>> PageRange(uint64_t gpa, uint64_t len) const;

  const GuestMemory* memory_;
  std::function<dsm::DsmNode*()> dsm_;
};

}  // namespace coalesce
