#include "dsm/uffd_page_memory.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "dsm/wire_format.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"

namespace coalesce::dsm {
namespace {

alignas(4096) const uint8_t kZeroPage[kPageSize] = {};

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)  // Linux 6.1's /dev/userfaultfd
#endif

}  // namespace

absl::StatusOr<std::unique_ptr<UffdPageMemory>> UffdPageMemory::Create(int memfd, uint8_t* base, uint64_t size,
                                                                       int userfaultfd_device) {
  if (size == 0 || size % kPageSize != 0 || reinterpret_cast<uintptr_t>(base) % kPageSize != 0) {
    return absl::InvalidArgumentError("DSM memory must be page-aligned and a whole number of pages");
  }
  if (userfaultfd_device >= 0) {
    // The device's permissions, checked when it was opened, stand in for CAP_SYS_PTRACE: the new userfaultfd
    // belongs to this process's memory and catches kernel-mode faults too.
    const int fd = ::ioctl(userfaultfd_device, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return ErrnoStatus("USERFAULTFD_IOC_NEW on the /dev/userfaultfd given");
    return Register(UniqueFd(fd), memfd, base, size);
  }
  // Not UFFD_USER_MODE_ONLY: KVM resolves guest faults from kernel mode (get_user_pages) and they must reach us.
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0 && errno == EPERM) {
    // Unprivileged, with vm.unprivileged_userfaultfd=0: user-mode faults only. Enough for host threads touching
    // the memory; KVM or a system call reading or writing it would fail instead of waiting for the page.
    fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
    if (fd >= 0) LOG_WARN("userfaultfd: user-mode faults only (no CAP_SYS_PTRACE): KVM cannot use this memory");
  }
  if (fd < 0) return ErrnoStatus("userfaultfd (needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1)");
  return Register(UniqueFd(fd), memfd, base, size);
}

absl::StatusOr<std::unique_ptr<UffdPageMemory>> UffdPageMemory::Register(UniqueFd uffd, int memfd, uint8_t* base,
                                                                         uint64_t size) {
  const int fd = uffd.get();
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_PAGEFAULT_FLAG_WP;
  if (::ioctl(fd, UFFDIO_API, &api) < 0) return ErrnoStatus("UFFDIO_API (shmem + write-protect features)");
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(base);
  reg.range.len = size;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
  if (::ioctl(fd, UFFDIO_REGISTER, &reg) < 0) return ErrnoStatus("UFFDIO_REGISTER (MISSING | WP) on the memfd");
  // A forked child would inherit the mapping without the registration and could fill holes in the shared memfd
  // behind the protocol's back. Processes that need guest RAM get the memfd itself (vhost-user), not a fork.
  if (::madvise(base, size, MADV_DONTFORK) < 0) return ErrnoStatus("madvise(MADV_DONTFORK) on DSM memory");
  const uint64_t need = (uint64_t{1} << _UFFDIO_COPY) | (uint64_t{1} << _UFFDIO_WRITEPROTECT) |
                        (uint64_t{1} << _UFFDIO_WAKE);
  if ((reg.ioctls & need) != need) return absl::UnimplementedError("userfaultfd lacks COPY/WRITEPROTECT/WAKE");
  auto mem = std::unique_ptr<UffdPageMemory>(new UffdPageMemory(std::move(uffd), memfd, base, size));
  mem->registered_ = true;
  return mem;
}

UffdPageMemory::~UffdPageMemory() { Unregister(); }

void UffdPageMemory::Unregister() {
  if (!registered_) return;
  uffdio_range range{reinterpret_cast<uint64_t>(base_), size_};
  ::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &range);
  registered_ = false;
}

absl::StatusOr<size_t> UffdPageMemory::ReadFaults(std::span<FaultEvent> out) {
  uffd_msg msgs[64];
  const size_t want = std::min(out.size(), sizeof(msgs) / sizeof(msgs[0]));
  ssize_t n = ::read(uffd_.get(), msgs, want * sizeof(uffd_msg));
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return 0;
    return ErrnoStatus("read userfaultfd");
  }
  size_t count = 0;
  for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i) {
    if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;  // no other events were asked for
    const uint64_t addr = msgs[i].arg.pagefault.address;
    const uint64_t start = reinterpret_cast<uint64_t>(base_);
    if (addr < start || addr - start >= size_) continue;
    const uint64_t flags = msgs[i].arg.pagefault.flags;
    out[count++] = FaultEvent{(addr - start) / kPageSize, (flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0,
                              (flags & UFFD_PAGEFAULT_FLAG_WP) != 0};
  }
  return count;
}

absl::Status UffdPageMemory::Install(uint64_t page, const uint8_t* data, bool writable) {
  uffdio_copy copy{};
  copy.dst = reinterpret_cast<uint64_t>(base_) + page * kPageSize;
  copy.src = reinterpret_cast<uint64_t>(data != nullptr ? data : kZeroPage);
  copy.len = kPageSize;
  copy.mode = writable ? 0 : UFFDIO_COPY_MODE_WP;
  for (;;) {
    if (::ioctl(uffd_.get(), UFFDIO_COPY, &copy) == 0) return absl::OkStatus();
    if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrFormat("page %#x is present", page));
    if (errno != EAGAIN && errno != EINTR) return ErrnoStatus(absl::StrFormat("UFFDIO_COPY page %#x", page));
    if (copy.copy > 0) return absl::OkStatus();  // partial copy of one page means it is in
    copy.copy = 0;
  }
}

absl::Status UffdPageMemory::SetWriteProtect(uint64_t page, bool protect) {
  uffdio_writeprotect wp{};
  wp.range.start = reinterpret_cast<uint64_t>(base_) + page * kPageSize;
  wp.range.len = kPageSize;
  wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;  // unprotecting also wakes the blocked writers
  for (;;) {
    if (::ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp) == 0) return absl::OkStatus();
    if (errno != EAGAIN && errno != EINTR) {
      return ErrnoStatus(absl::StrFormat("UFFDIO_WRITEPROTECT(%d) page %#x", protect, page));
    }
  }
}

absl::Status UffdPageMemory::MakeWritable(uint64_t page) { return SetWriteProtect(page, false); }
absl::Status UffdPageMemory::WriteProtect(uint64_t page) { return SetWriteProtect(page, true); }

absl::Status UffdPageMemory::ReadPage(uint64_t page, uint8_t* out) {
  size_t done = 0;
  while (done < kPageSize) {
    ssize_t n = ::pread(memfd_, out + done, kPageSize - done, static_cast<off_t>(page * kPageSize + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrFormat("pread page %#x", page));
    }
    if (n == 0) {  // past EOF: cannot happen for a memfd sized to the mapping; read as zeros
      std::memset(out + done, 0, kPageSize - done);
      break;
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status UffdPageMemory::Drop(uint64_t page) {
  if (::fallocate(memfd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(page * kPageSize),
                  kPageSize) < 0) {
    return ErrnoStatus(absl::StrFormat("fallocate(PUNCH_HOLE) page %#x", page));
  }
  return absl::OkStatus();
}

absl::Status UffdPageMemory::DropAll() {
  if (::fallocate(memfd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(size_)) < 0) {
    return ErrnoStatus("fallocate(PUNCH_HOLE) all pages");
  }
  return absl::OkStatus();
}

absl::Status UffdPageMemory::Wake(uint64_t page) {
  uffdio_range range{reinterpret_cast<uint64_t>(base_) + page * kPageSize, kPageSize};
  if (::ioctl(uffd_.get(), UFFDIO_WAKE, &range) < 0) return ErrnoStatus("UFFDIO_WAKE");
  return absl::OkStatus();
}

}  // namespace coalesce::dsm
