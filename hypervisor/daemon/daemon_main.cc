#include "hypervisor/daemon/daemon_main.h"

#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/flag_parser.h"
#include "hypervisor/base/log.h"
#include "hypervisor/daemon/domain_manager.h"
#include "hypervisor/daemon/remote_dispatch.h"
#include "hypervisor/daemon/rpc_server.h"
#include "hypervisor/vcpu/exit_status.h"

namespace coalesce::daemon {

const char kDaemonUsage[] =
    "usage: coalesce daemon [--socket PATH] [--state-dir DIR] [--log-level LEVEL]\n"
    "\n"
    "Serves libvirt's remote protocol so that virsh manages Coalesce guests:\n"
    "  virsh -c 'coalesce+unix:///system?socket=PATH' list --all\n"
    "Guests run as `coalesce run` processes and outlive the daemon; definitions persist in the state directory.\n"
    "\n"
    "flags:\n"
    "  --socket PATH      UNIX socket to serve on, created mode 0600 (default /run/coalesce/coalesce-sock)\n"
    "  --state-dir DIR    domain definitions, run records, consoles and logs (default /var/lib/coalesce)\n"
    "  --log-level LEVEL  debug, info (default), warning or error\n"
    "  --help             this text\n";

namespace {

absl::Status MakeParents(const std::string& path) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    const std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InvalidArgumentError(absl::StrCat("cannot create ", dir, ": ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

int RunDaemonMain(const std::vector<std::string>& args) {
  std::string socket_path = "/run/coalesce/coalesce-sock";
  std::string state_dir = "/var/lib/coalesce";
  std::string log_level = "info";
  bool help = false;
  FlagParser flags;
  flags.Switch("--help", &help)
      .Alias("-h", "--help")
      .Value("--socket", StoreText(&socket_path))
      .Value("--state-dir", StoreText(&state_dir))
      .Value("--log-level", StoreText(&log_level));
  if (auto done = ParseCommandLine(flags, args, help, "coalesce daemon", kDaemonUsage, exit_status::kUsage))
    return *done;
  LogLevel level;
  if (!ParseLogLevel(log_level, &level)) {
    std::fprintf(stderr, "coalesce daemon: --log-level: '%s' is not one of debug, info, warning, error\n",
                 log_level.c_str());
    return exit_status::kUsage;
  }
  SetLogLevel(level);
  char self[PATH_MAX] = {};
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::fprintf(stderr, "coalesce daemon: cannot find its own executable: %s\n", strerror(errno));
    return exit_status::kHostFailure;
  }
  // Before any thread exists, so that only sigwait below sees the stop signals.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  // Guests' control sockets live in the state directory (run/VM.sock), apart from VMs users start by hand:
  // `coalesce run` children inherit this, and the daemon reaches them there (`virsh setvcpus --live`).
  // Set before any thread exists.
  ::setenv("COALESCE_RUN_DIR", (state_dir + "/run").c_str(), 1);
  absl::StatusOr<std::unique_ptr<DomainManager>> domains = DomainManager::Create(state_dir, self);
  if (!domains.ok()) {
    std::fprintf(stderr, "coalesce daemon: state directory %s: %s\n", state_dir.c_str(),
                 std::string(domains.status().message()).c_str());
    return exit_status::kUsage;
  }
  if (absl::Status st = MakeParents(socket_path); !st.ok()) {
    std::fprintf(stderr, "coalesce daemon: --socket: %s\n", std::string(st.message()).c_str());
    return exit_status::kUsage;
  }
  RemoteDispatcher dispatcher(domains->get());
  absl::StatusOr<std::unique_ptr<RpcServer>> server = RpcServer::Start(socket_path, &dispatcher);
  if (!server.ok()) {
    std::fprintf(stderr, "coalesce daemon: --socket %s: %s\n", socket_path.c_str(),
                 std::string(server.status().message()).c_str());
    return exit_status::kUsage;
  }
  std::fprintf(stderr, "coalesce daemon: serving %s (state in %s)\n", socket_path.c_str(), state_dir.c_str());
  std::fflush(stderr);
  int sig = 0;
  sigwait(&stop, &sig);
  const ServerCounters& c = (*server)->counters();
  std::fprintf(stderr,
               "coalesce daemon: stopping on signal %d (%s); %lu clients, %lu messages, %lu malformed, %lu timed "
               "out; guests keep running\n",
               sig, strsignal(sig), static_cast<unsigned long>(c.clients.load()),
               static_cast<unsigned long>(c.messages.load()), static_cast<unsigned long>(c.malformed.load()),
               static_cast<unsigned long>(c.timeouts.load()));
  server->reset();  // disconnects clients, closes console streams
  domains->reset();
  return 0;
}

}  // namespace coalesce::daemon
