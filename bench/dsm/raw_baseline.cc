#include "bench/dsm/raw_baseline.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "hypervisor/base/errno_status.h"

namespace coalesce::dsm::bench {
namespace {

constexpr size_t kPage = 4096;

uint64_t NowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

bool ReadFull(int fd, void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// A connected loopback TCP pair with TCP_NODELAY on both ends.
absl::Status TcpPair(int* a, int* b) {
  int l = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0 || ::listen(l, 1) < 0 ||
      ::getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    return ErrnoStatus("baseline listen");
  }
  *a = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(*a, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) return ErrnoStatus("baseline connect");
  *b = ::accept(l, nullptr, nullptr);
  ::close(l);
  int one = 1;
  ::setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return absl::OkStatus();
}

// Serves 32-byte requests with a 32-byte header + 4 KiB page, until the peer closes.
void PageServer(int fd) {
  alignas(64) uint8_t req[32];
  static uint8_t page[kPage];
  std::memset(page, 0x5A, sizeof(page));
  uint8_t hdr[32] = {};
  while (ReadFull(fd, req, sizeof(req))) {
    iovec iov[2] = {{hdr, sizeof(hdr)}, {page, sizeof(page)}};
    msghdr mh{};
    mh.msg_iov = iov;
    mh.msg_iovlen = 2;
    if (::sendmsg(fd, &mh, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(hdr) + sizeof(page))) return;
  }
}

struct UffdRegion {
  int memfd = -1, uffd = -1;
  uint8_t* base = nullptr;
  size_t size = 0;
  ~UffdRegion() {
    if (base != nullptr) ::munmap(base, size);
    if (uffd >= 0) ::close(uffd);
    if (memfd >= 0) ::close(memfd);
  }
};

absl::Status MakeRegion(size_t pages, UffdRegion* r, bool owned = false) {
  r->size = pages * kPage;
  r->memfd = ::memfd_create("raw-baseline", MFD_CLOEXEC);
  if (r->memfd < 0 || ::ftruncate(r->memfd, static_cast<off_t>(r->size)) < 0) return ErrnoStatus("memfd");
  void* p = ::mmap(nullptr, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
  if (p == MAP_FAILED) return ErrnoStatus("mmap");
  r->base = static_cast<uint8_t*>(p);
  r->uffd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (r->uffd < 0) return ErrnoStatus("userfaultfd");
  // An owner's region is registered as the DSM registers guest memory, and written through its mapping before
  // any sample (its pages are in the memfd first, so those writes raise no missing fault): Modified pages.
  uffdio_api api{UFFD_API, uint64_t{UFFD_FEATURE_MISSING_SHMEM} | (owned ? UFFD_FEATURE_PAGEFAULT_FLAG_WP : 0), 0};
  if (::ioctl(r->uffd, UFFDIO_API, &api) < 0) return ErrnoStatus("UFFDIO_API");
  uffdio_register reg{};
  reg.range = {reinterpret_cast<uint64_t>(r->base), r->size};
  reg.mode = UFFDIO_REGISTER_MODE_MISSING | (owned ? UFFDIO_REGISTER_MODE_WP : 0);
  if (::ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0) return ErrnoStatus("UFFDIO_REGISTER");
  if (owned) {
    static uint8_t page[kPage];
    std::memset(page, 0x5A, sizeof(page));
    for (size_t i = 0; i < pages; ++i) {
      if (::pwrite(r->memfd, page, kPage, static_cast<off_t>(i * kPage)) != static_cast<ssize_t>(kPage)) {
        return ErrnoStatus("owner pwrite");
      }
      r->base[i * kPage] = 0xA5;
    }
  }
  return absl::OkStatus();
}

// Fault handler blocked in poll (as the DSM's is); fetch_fd < 0: resolve locally, else fetch over TCP first.
void Handler(int uffd, int stop_fd, int fetch_fd) {
  static uint8_t page[kPage];
  uint8_t req[32] = {}, hdr[32];
  for (;;) {
    pollfd fds[2] = {{uffd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    ::poll(fds, 2, -1);
    if (fds[1].revents & POLLIN) return;
    uffd_msg msg;
    if (::read(uffd, &msg, sizeof(msg)) != sizeof(msg)) continue;
    if (fetch_fd >= 0) {
      if (::send(fetch_fd, req, sizeof(req), MSG_NOSIGNAL) != sizeof(req) || !ReadFull(fetch_fd, hdr, sizeof(hdr)) ||
          !ReadFull(fetch_fd, page, sizeof(page))) {
        return;
      }
    }
    uffdio_copy copy{};
    copy.dst = msg.arg.pagefault.address & ~(kPage - 1);
    copy.src = reinterpret_cast<uint64_t>(page);
    copy.len = kPage;
    ::ioctl(uffd, UFFDIO_COPY, &copy);
  }
}

}  // namespace

struct RawPath::Region {
  UffdRegion r;
};

absl::StatusOr<std::unique_ptr<RawPath>> RawPath::Create(uint64_t pages) {
  auto p = std::unique_ptr<RawPath>(new RawPath());
  p->pages_ = pages;
  p->local_ = std::make_unique<Region>();
  p->fetched_ = std::make_unique<Region>();
  p->owned_ = std::make_unique<Region>();
  if (auto s = MakeRegion(pages, &p->local_->r); !s.ok()) return s;
  if (auto s = MakeRegion(pages, &p->fetched_->r); !s.ok()) return s;
  if (auto s = MakeRegion(pages, &p->owned_->r, /*owned=*/true); !s.ok()) return s;
  if (auto s = TcpPair(&p->client_, &p->server_); !s.ok()) return s;
  if (auto s = TcpPair(&p->handler_client_, &p->handler_server_); !s.ok()) return s;
  p->stop_ = ::eventfd(0, EFD_CLOEXEC);
  // The page servers run in their own processes, as the DSM's owners do: on one machine a wake-up across
  // processes switches address spaces, which a server thread in this process would never pay.
  for (int fd : {p->server_, p->handler_server_}) {
    const pid_t pid = ::fork();
    if (pid < 0) return ErrnoStatus("baseline fork");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      PageServer(fd);
      ::_exit(0);
    }
    p->server_pids_.push_back(pid);
    ::close(fd);
  }
  p->server_ = p->handler_server_ = -1;
  p->local_handler_ = std::thread(Handler, p->local_->r.uffd, p->stop_, -1);
  p->fetch_handler_ = std::thread(Handler, p->fetched_->r.uffd, p->stop_, p->handler_client_);
  return p;
}

RawPath::~RawPath() {
  uint64_t one = 1;
  if (stop_ >= 0) [[maybe_unused]] ssize_t w = ::write(stop_, &one, sizeof(one));
  if (local_handler_.joinable()) local_handler_.join();
  if (fetch_handler_.joinable()) fetch_handler_.join();
  for (int fd : {client_, handler_client_}) {
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }
  for (pid_t pid : server_pids_) ::waitpid(pid, nullptr, 0);
  for (int fd : {client_, server_, handler_client_, handler_server_, stop_}) {
    if (fd >= 0) ::close(fd);
  }
}

uint64_t RawPath::UffdFault() {
  if (next_local_ >= pages_) return 0;
  const uint64_t t0 = NowNs();
  (void)*reinterpret_cast<volatile uint8_t*>(local_->r.base + next_local_++ * kPage);
  return NowNs() - t0;
}

uint64_t RawPath::FaultViaTcp() {
  if (next_fetched_ >= pages_) return 0;
  const uint64_t t0 = NowNs();
  (void)*reinterpret_cast<volatile uint8_t*>(fetched_->r.base + next_fetched_++ * kPage);
  return NowNs() - t0;
}

uint64_t RawPath::TcpRtt4k() {
  uint8_t req[32] = {}, hdr[32];
  static uint8_t page[kPage];
  const uint64_t t0 = NowNs();
  if (::send(client_, req, sizeof(req), MSG_NOSIGNAL) != sizeof(req) || !ReadFull(client_, hdr, sizeof(hdr)) ||
      !ReadFull(client_, page, sizeof(page))) {
    return 0;
  }
  return NowNs() - t0;
}

uint64_t RawPath::OwnerWork(bool punch) {
  if (next_owned_ >= pages_) return 0;
  UffdRegion& r = owned_->r;
  const uint64_t page = next_owned_++;
  static uint8_t copy[kPage];
  const uint64_t t0 = NowNs();
  uffdio_writeprotect wp{};
  wp.range = {reinterpret_cast<uint64_t>(r.base + page * kPage), kPage};
  wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
  if (::ioctl(r.uffd, UFFDIO_WRITEPROTECT, &wp) < 0) return 0;
  if (::pread(r.memfd, copy, kPage, static_cast<off_t>(page * kPage)) != static_cast<ssize_t>(kPage)) return 0;
  if (punch && ::fallocate(r.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(page * kPage),
                           kPage) < 0) {
    return 0;
  }
  return NowNs() - t0;
}

uint64_t RawPath::OwnerDowngrade() { return OwnerWork(false); }
uint64_t RawPath::OwnerHandOver() { return OwnerWork(true); }

}  // namespace coalesce::dsm::bench
