// KVM's coalesced MMIO ring: a guest write to a zone registered with VmFd::CoalesceMmioWrites does not exit;
// KVM appends it (address, length, bytes) to one page it shares with the VMM (mapped in every vCPU's kvm_run
// mapping at the page KVM_CAP_COALESCED_MMIO names), and the VMM replays the writes later, oldest first. The
// VMM must replay them before anything that could depend on them: before it handles any exit (the same
// vCPU's later accesses, and other vCPUs' accesses that follow them) and before a device changes the state
// those writes change. A full ring makes KVM exit with the write instead, after the ones already in it.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace coalesce {

class CoalescedMmioRing final {
 public:
  // `page`: the ring's 4 KiB page (a vCPU's mapping of it, or a test's own page in KVM's layout). Not owned.
  explicit CoalescedMmioRing(void* page) : page_(static_cast<uint8_t*>(page)) {}

  using Replay = std::function<void(uint64_t addr, std::span<const uint8_t> data)>;
  // Replays every write in the ring through `replay`, oldest first, and frees its slots; returns how many.
  // Any thread; drains run one at a time, so writes replay in the order the guest made them. `replay` may
  // not drain again. An entry KVM could not have written (a length over 8, an index past the ring) stops the
  // drain and is counted (anomalies()); the ring is then reset to empty.
  size_t Drain(const Replay& replay);
  // Whether the ring holds anything; a cheap check before taking the lock. Any thread.
  [[nodiscard]] bool HasWrites() const;
  [[nodiscard]] uint64_t anomalies() const;

  // KVM's layout (linux/kvm.h, kvm_coalesced_mmio_ring): two 32-bit indices, then 24-byte entries filling the
  // page. The uapi struct ends in a flexible array whose C++ size differs from C's (kvm_abi.h), so the offsets
  // are spelled out.
  static constexpr size_t kPageSize = 4096;
  static constexpr size_t kHeaderSize = 8;
  static constexpr size_t kEntrySize = 24;  // phys_addr (8), len (4), pad/pio (4), data (8)
  static constexpr uint32_t kEntries = (kPageSize - kHeaderSize) / kEntrySize;

 private:
  uint8_t* const page_;
  mutable absl::Mutex mu_;
  uint64_t anomalies_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace coalesce
