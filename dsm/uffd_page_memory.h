// PageMemory on a memfd mapped MAP_SHARED and registered with userfaultfd (MISSING | WP). The only code in
// Coalesce that knows about userfaultfd. Page p is file offset p * 4 KiB and host address base + p * 4 KiB.
//
// Why each operation is done the way it is (see ../shared/design-notes.md): fills go through UFFDIO_COPY (atomic
// install + wake; with MODE_WP for a read-only copy), Shared <-> Modified is UFFDIO_WRITEPROTECT, invalidation is
// fallocate(PUNCH_HOLE), which also drops KVM's mapping of the page through its MMU notifier, and page contents are
// read with pread() on the memfd, which never faults and reads a hole as zeros without allocating it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "dsm/page_memory.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce::dsm {

struct FaultEvent {
  uint64_t page;
  bool write;  // the access was a write
  bool wp;     // it hit a write-protected present page (else the page was missing)
};

class UffdPageMemory final : public PageMemory {
 public:
  // `base` must be the MAP_SHARED mapping of `memfd` from offset 0, `size` bytes (a multiple of 4 KiB).
  // `userfaultfd_device`: an open /dev/userfaultfd (not owned) to create the userfaultfd through, or -1.
  static absl::StatusOr<std::unique_ptr<UffdPageMemory>> Create(int memfd, uint8_t* base, uint64_t size,
                                                                int userfaultfd_device = -1);
  ~UffdPageMemory() override;

  // Non-blocking: the fault events queued now (possibly none).
  absl::StatusOr<size_t> ReadFaults(std::span<FaultEvent> out);
  [[nodiscard]] int uffd() const { return uffd_.get(); }
  // Drops every page (a node that is not the home starts with everything Invalid).
  absl::Status DropAll();
  // Unregisters the range: threads blocked on a fault are released and later accesses no longer fault.
  void Unregister();

  absl::Status Install(uint64_t page, const uint8_t* data, bool writable) override;
  absl::Status MakeWritable(uint64_t page) override;
  absl::Status WriteProtect(uint64_t page) override;
  absl::Status ReadPage(uint64_t page, uint8_t* out) override;
  absl::Status Drop(uint64_t page) override;
  absl::Status Wake(uint64_t page) override;

 private:
  UffdPageMemory(UniqueFd uffd, int memfd, uint8_t* base, uint64_t size)
      : uffd_(std::move(uffd)), memfd_(memfd), base_(base), size_(size) {}
  // Negotiates the API on a new userfaultfd and registers the range (MISSING and WP).
  static absl::StatusOr<std::unique_ptr<UffdPageMemory>> Register(UniqueFd uffd, int memfd, uint8_t* base,
                                                                  uint64_t size);
  absl::Status SetWriteProtect(uint64_t page, bool protect);

  UniqueFd uffd_;
  int memfd_;
  uint8_t* base_;
  uint64_t size_;
  bool registered_ = false;
};

}  // namespace coalesce::dsm
