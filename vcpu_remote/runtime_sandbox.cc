#include "vcpu_remote/runtime_sandbox.h"

#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {
namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

// Every system call the runtime was seen to make while hosting vCPUs (KVM_RUN loops, the DSM's userfaultfd
// and sockets, timers, signals, logging) under strace, plus what glibc does on their error paths. clone is
// further limited to threads and socket to IP and UNIX sockets below; clone3 answers ENOSYS (glibc then uses
// clone, whose flags the filter can see).
const std::vector<std::string> kAllowed = {
    // memory
    "brk", "mmap", "munmap", "mprotect", "madvise", "mremap",
    // threads, time, synchronization
    "futex", "set_robust_list", "rseq", "sched_yield", "sched_getaffinity", "gettid", "getpid", "getppid",
    "getuid", "geteuid", "getgid", "getegid", "tgkill", "tkill", "exit", "exit_group", "nanosleep", "clock_nanosleep", "clock_gettime", "gettimeofday",
    "getrandom", "prlimit64", "getrlimit",
    // Abseil's Mutex reads the waiting thread's scheduling priority now and then (pthread_getschedparam)
    "sched_getparam", "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
    // signals (kicks of vCPU threads, the stop signal)
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "rt_sigqueueinfo", "sigaltstack",
    "restart_syscall", "kill",
    // descriptors (KVM, userfaultfd, eventfd, timerfd, sockets; the DSM reads pages with pread and drops them
    // with fallocate(PUNCH_HOLE))
    // (ioctl: by request type only, below)
    "read", "write", "readv", "writev", "pread64", "pwrite64", "fallocate", "close", "fcntl", "dup", "lseek",
    "fstat", "newfstatat", "statx", "poll", "ppoll", "pselect6", "select", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime", "pipe2",
    // the data plane (peer connections are made while the node runs)
    "connect", "accept", "accept4", "bind", "listen", "setsockopt", "getsockopt", "getsockname", "getpeername",
    "sendto", "sendmsg", "recvfrom", "recvmsg", "shutdown",
    // files the runtime may read while running (/proc/self, /sys CPU data)
    "openat", "readlink", "uname", "sysinfo",
    // thread names and the parent-death signal
    "prctl",
};

// The bounding and ambient sets, while CAP_SETPCAP is still held (before the change of user).
absl::Status DropBoundingSet() {
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      if (errno == EPERM) return absl::OkStatus();  // not privileged: the set is not ours to shrink
      return ErrnoStatus("PR_CAPBSET_DROP");
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return ErrnoStatus("PR_CAP_AMBIENT_CLEAR_ALL");
  }
  return absl::OkStatus();
}

// Effective, permitted and inheritable: empty.
absl::Status ClearCapabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capset, &header, data) != 0) return ErrnoStatus("capset");
  return absl::OkStatus();
}

absl::Status BecomeNobody() {
  const pid_t agent = ::getppid();
  if (::setgroups(0, nullptr) != 0) return ErrnoStatus("setgroups");
  if (::setresgid(kNogroup, kNogroup, kNogroup) != 0) return ErrnoStatus("setresgid(nogroup)");
  if (::setresuid(kNobody, kNobody, kNobody) != 0) return ErrnoStatus("setresuid(nobody)");
  // A credential change clears the parent-death signal: the runtime must still die with its agent.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return ErrnoStatus("PR_SET_PDEATHSIG");
  if (::getppid() != agent) return absl::AbortedError("the agent exited while the runtime was being confined");
  return absl::OkStatus();
}

// Whether this process is in a user namespace of its own: its uid_map is not the initial namespace's identity
// map ("0 0 4294967295"). There root is already unprivileged outside, and nobody is not mapped at all.
absl::StatusOr<HostIdentity> ReadHostIdentity() {
  const std::string path = "/proc/self/uid_map";
  std::ifstream in(path);
  if (!in) return absl::InternalError(absl::StrCat("cannot read ", path));
  HostIdentity id;
  id.uid = ::geteuid();
  uint64_t inside = 0, outside = 0, count = 0;
  bool identity = false, found = false;
  while (in >> inside >> outside >> count) {
    if (inside == 0 && outside == 0 && count == 4294967295ull) identity = true;
    if (!found && id.uid >= inside && id.uid - inside < count) {
      id.host_uid = static_cast<uid_t>(outside + (id.uid - inside));
      found = true;
    }
  }
  if (!found) return absl::InternalError(absl::StrCat(path, " does not map uid ", id.uid));
  id.own_user_namespace = !identity;
  return id;
}

absl::Status InstallFilter() {
  std::unique_ptr<void, decltype(&seccomp_release)> ctx(seccomp_init(SCMP_ACT_KILL_PROCESS), seccomp_release);
  if (!ctx) return absl::InternalError("seccomp_init failed");
  auto check = [](int rc, const std::string& what) {
    return rc == 0 ? absl::OkStatus() : absl::InternalError(absl::StrCat("seccomp: ", what, ": ", std::strerror(-rc)));
  };
  for (const std::string& name : kAllowed) {
    const int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) return absl::InternalError(absl::StrCat("seccomp: unknown system call ", name));
    if (absl::Status st = check(seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 0), name); !st.ok()) return st;
  }
  // Threads only: a new process (fork) could exec around the filter's intent.
  RETURN_IF_ERROR(check(seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                                                 SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)),
                                "clone"));
  RETURN_IF_ERROR(check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0), "clone3"));
  // ioctl: KVM's and userfaultfd's requests (by their type byte, bits 8-15 of the request), and TCGETS, which
  // stdio's isatty() makes; no terminal injection (TIOCSTI), no network or block-device requests.
  for (const IoctlAllowance& allowance : RuntimeAllowedIoctls()) {
    RETURN_IF_ERROR(check(seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                           SCMP_A1(SCMP_CMP_MASKED_EQ, allowance.mask, allowance.value)),
                          "ioctl"));
  }
  for (int domain : {AF_INET, AF_INET6, AF_UNIX}) {
    RETURN_IF_ERROR(check(seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                                                   SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(domain))),
                                  "socket"));
  }
  RETURN_IF_ERROR(check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1), "thread synchronization"));
  RETURN_IF_ERROR(check(seccomp_load(ctx.get()), "load"));
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& RuntimeAllowedSyscalls() { return kAllowed; }

const std::vector<IoctlAllowance>& RuntimeAllowedIoctls() {
  static const std::vector<IoctlAllowance> allowed = {
      {"KVM (type 0xAE)", 0xFF00, 0xAE00},
      {"userfaultfd (type 0xAA)", 0xFF00, 0xAA00},
      {"TCGETS (isatty)", 0xFFFFFFFF, 0x5401},
  };
  return allowed;
}

absl::StatusOr<HostIdentity> ConfineRuntime(const SandboxOptions& options) {
  ASSIGN_OR_RETURN(HostIdentity before, ReadHostIdentity());
  if (::unshare(CLONE_NEWIPC | CLONE_NEWNS) == 0) {
    // Mount changes stay in this namespace (none are made: the point is that none can reach the host).
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return ErrnoStatus("mount --make-rprivate /");
  } else if (errno != EPERM) {
    return ErrnoStatus("unshare(IPC, mount)");
  }  // EPERM: not root; the rest still applies
  for (const auto& [base, length] : options.private_memory) {
    if (::madvise(base, length, MADV_DONTDUMP) != 0) return ErrnoStatus("madvise(MADV_DONTDUMP)");
  }
  RETURN_IF_ERROR(DropBoundingSet());
  // In a user namespace of its own, root is only its agent's choice of id outside (nobody), and nobody is not
  // mapped inside: the capabilities, held over that namespace alone, are cleared below.
  if (::geteuid() == 0 && options.drop_to_nobody && !before.own_user_namespace) RETURN_IF_ERROR(BecomeNobody());
  if (::prctl(PR_SET_DUMPABLE, 0) != 0) return ErrnoStatus("PR_SET_DUMPABLE");
  RETURN_IF_ERROR(ClearCapabilities());
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return ErrnoStatus("PR_SET_NO_NEW_PRIVS");
  ASSIGN_OR_RETURN(HostIdentity after, ReadHostIdentity());  // before the filter: it allows openat, but why rely on it
  RETURN_IF_ERROR(InstallFilter());
  return after;
}

}  // namespace coalesce
