// The remote runtime's confinement, applied in a forked child of this test: what it still may do (threads,
// IP sockets, pipes, time), what kills it (exec, fork, netlink sockets, ptrace, mount: SIGSYS from the seccomp
// filter), and what it no longer is (root, capable, dumpable).
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "vcpu_remote/runtime_sandbox.h"

namespace coalesce {
namespace {

// Runs `body` in a confined child; returns its wait status. The child exits 0 when `body` returns true.
int InConfinedChild(const std::function<bool()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (absl::StatusOr<HostIdentity> id = ConfineRuntime({}); !id.ok()) {
      std::fprintf(stderr, "ConfineRuntime: %s\n", id.status().ToString().c_str());
      ::_exit(90);
    }
    ::_exit(body() ? 0 : 91);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

bool KilledBySigsys(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS; }

std::string StatusLine(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) == 0) return line.substr(key.size() + 1);
  }
  return "";
}

}  // namespace

TEST_CASE("a confined runtime keeps threads, IP sockets, pipes and time, and loses root and capabilities") {
  const int status = InConfinedChild([] {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0 || ::write(fds[1], "x", 1) != 1) return false;
    bool thread_ran = false;
    std::thread t([&] { thread_ran = true; });
    t.join();
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || !thread_ran) return false;
    ::close(s);
    timespec ts;
    if (::clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return false;
    int policy = 0;
    sched_param param{};
    if (::pthread_getschedparam(::pthread_self(), &policy, &param) != 0) return false;  // absl::Mutex does this
    const bool was_root = ::getuid() == 0;  // the test may run unprivileged: then nothing to drop
    if (was_root && ::geteuid() != 0) return false;
    const std::string cap_eff = StatusLine("CapEff"), cap_bnd = StatusLine("CapBnd"), seccomp = StatusLine("Seccomp");
    const bool ok = ::prctl(PR_GET_DUMPABLE) == 0 && ::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 && !cap_eff.empty() &&
                    cap_eff.find_first_not_of("\t 0") == std::string::npos &&
                    cap_bnd.find_first_not_of("\t 0") == std::string::npos && seccomp.find('2') != std::string::npos;
    if (!ok) {
      std::fprintf(stderr, "dumpable %d no_new_privs %d CapEff '%s' CapBnd '%s' Seccomp '%s'\n",
                   ::prctl(PR_GET_DUMPABLE), ::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), cap_eff.c_str(), cap_bnd.c_str(),
                   seccomp.c_str());
    }
    return ok;
  });
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a root test child becomes nobody") {
  if (::geteuid() != 0) return;  // covered by the case above when unprivileged
  const int status = InConfinedChild([] { return ::getuid() == 65534 && ::getgid() == 65534; });
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("system calls outside the runtime's set kill it with SIGSYS") {
  CHECK(KilledBySigsys(InConfinedChild([] {
    char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
    ::execv("/bin/true", argv);
    return true;
  })));
  CHECK(KilledBySigsys(InConfinedChild([] {
    const pid_t p = ::fork();  // a process, not a thread
    if (p == 0) ::_exit(0);
    return true;
  })));
  CHECK(KilledBySigsys(InConfinedChild([] { return ::socket(AF_NETLINK, SOCK_RAW, 0) >= 0 || true; })));
  CHECK(KilledBySigsys(InConfinedChild([] { return ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) == 0 || true; })));
  CHECK(KilledBySigsys(InConfinedChild([] { return ::mount("none", "/mnt", "tmpfs", 0, nullptr) == 0 || true; })));
  CHECK(KilledBySigsys(InConfinedChild([] { return ::unshare(CLONE_NEWNET) == 0 || true; })));
  // ioctl outside KVM's and userfaultfd's: a terminal's window size, a socket's interface list.
  CHECK(KilledBySigsys(InConfinedChild([] {
    winsize ws{};
    return ::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 || true;
  })));
  CHECK(KilledBySigsys(InConfinedChild([] {
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int n = 0;
    return ::ioctl(s, FIONREAD, &n) == 0 || true;
  })));
}

TEST_CASE("KVM's and userfaultfd's ioctl requests pass the filter (the kernel answers them)") {
  // On a pipe the kernel refuses them with ENOTTY: what matters is that the filter let them through.
  const int status = InConfinedChild([] {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return false;
    const bool kvm = ::ioctl(fds[0], _IO(0xAE, 0x00)) == -1 && errno == ENOTTY;            // KVM_GET_API_VERSION
    const bool uffd = ::ioctl(fds[0], _IOWR(0xAA, 0x3F, uint64_t)) == -1 && errno == ENOTTY;  // UFFDIO_API's type
    return kvm && uffd && ::isatty(fds[0]) == 0;  // isatty: TCGETS
  });
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("the allowed set names only real system calls and leaves out the dangerous ones") {
  const auto& allowed = RuntimeAllowedSyscalls();
  for (const char* forbidden : {"execve", "execveat", "fork", "vfork", "ptrace", "mount", "umount2", "setns",
                                "unshare", "bpf", "init_module", "finit_module", "kexec_load", "reboot",
                                "process_vm_readv", "process_vm_writev", "perf_event_open", "setuid"}) {
    CHECK(std::find(allowed.begin(), allowed.end(), forbidden) == allowed.end());
  }
}

}  // namespace coalesce
