// What the protocol engine needs from this node's copy of the shared memory. The real implementation
// (UffdPageMemory) uses userfaultfd and the memfd; the unit tests' simulator uses plain byte arrays, which lets
// them drive every message interleaving without a kernel in the loop.
//
// Invariant kept by the engine: a page is present (materialized) in this node's memory only in Shared or Modified;
// Invalid pages are absent, so any access to them faults.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace coalesce::dsm {

class PageMemory {
 public:
  virtual ~PageMemory() = default;
  // Fills an absent page with `data` (4 KiB; nullptr means zeros), writable or write-protected, and wakes the
  // threads waiting on it. AlreadyExists if the page is present (a stale fault event raced with an install).
  virtual absl::Status Install(uint64_t page, const uint8_t* data, bool writable) = 0;
  // Present page: write-protected -> writable, waking writers.
  virtual absl::Status MakeWritable(uint64_t page) = 0;
  // Present page: writable -> write-protected; after it returns no thread can still write the page.
  virtual absl::Status WriteProtect(uint64_t page) = 0;
  // Copies the page out without faulting (an absent page reads as zeros).
  virtual absl::Status ReadPage(uint64_t page, uint8_t* out) = 0;
  // Makes the page absent everywhere in this node (the next access faults).
  virtual absl::Status Drop(uint64_t page) = 0;
  // Wakes threads waiting on a fault that turned out to be resolved already.
  virtual absl::Status Wake(uint64_t page) = 0;
};

}  // namespace coalesce::dsm
