// Address ranges -> devices, for one address space (port I/O or MMIO). Ranges are registered while the
// machine is built, then the map is read-only, so lookups take no lock; devices lock themselves.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/bus/bus_device.h"

namespace coalesce {

class Bus final {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}

  // Claims [base, base+size) for `device` (not owned; must outlive the bus). Overlaps are rejected.
  absl::Status Register(uint64_t base, uint64_t size, BusDevice* device);

  // Dispatches an access. Returns false if no device claims `addr`; reads of unclaimed addresses return
  // all ones, writes are dropped; both are counted and logged once per address.
  bool Read(uint64_t addr, std::span<uint8_t> data);
  bool Write(uint64_t addr, std::span<const uint8_t> data);

  [[nodiscard]] uint64_t unclaimed_accesses() const { return unclaimed_.load(std::memory_order_relaxed); }
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  struct Range {
    uint64_t size;
    BusDevice* device;
  };
  // Finds the range holding addr; sets *offset. nullptr if none.
  BusDevice* Find(uint64_t addr, uint64_t* offset) const;
  void NoteUnclaimed(uint64_t addr, bool write);

  std::string name_;
  std::map<uint64_t, Range> ranges_;  // keyed by base; immutable after build
  std::atomic<uint64_t> unclaimed_{0};
  absl::Mutex logged_mu_;
  absl::flat_hash_set<uint64_t> logged_ ABSL_GUARDED_BY(logged_mu_);
};

}  // namespace coalesce
