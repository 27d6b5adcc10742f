// Test stand-in for the remote vCPU runtime (`coalesce remote-node`, to come in vcpu_remote/): a real process that
// follows the argv and readiness contract of edge_monitor/remote_node_args.h, so the edge agent's supervision is
// tested end to end (fork/exec, readiness pipe, signals, reaping) without KVM.
//
// Its behaviour comes from the VM id's prefix, since many VMs share one agent:
//   "exit<N>-..."     exits with status N before reporting ready;
//   "noready-..."     never reports ready (sleeps until killed);
//   "crash<N>-..."    reports ready, then exits with status N after 100 ms;
//   "stubborn-..."    reports ready and ignores SIGTERM;
//   anything else     reports ready and runs until SIGTERM, then exits 0.
// It reads the data-plane key from --data-plane-key-fd to EOF, as the real runtime does. If FAKE_REMOTE_NODE_DIR is
// set, it writes its argv (one per line), "key=<the key's bytes>" and then "pid=<pid>" to
// $FAKE_REMOTE_NODE_DIR/<vm id>.args first.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "edge_monitor/remote_node_args.h"

namespace {

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

int NumberAfter(const std::string& s, size_t prefix_len) { return std::atoi(s.c_str() + prefix_len); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "remote-node") {
    std::fprintf(stderr, "fake_remote_node: expected 'remote-node' as the first argument\n");
    return 64;
  }
  std::vector<std::string> flags(argv + 2, argv + argc);
  auto args = coalesce::RemoteNodeArgs::Parse(flags);
  if (!args.ok()) {
    std::fprintf(stderr, "fake_remote_node: %s\n", std::string(args.status().message()).c_str());
    return 65;
  }
  std::string key;
  char buf[64];
  for (ssize_t n; (n = read(args->data_plane_key_fd, buf, sizeof(buf))) > 0;) key.append(buf, static_cast<size_t>(n));
  close(args->data_plane_key_fd);
  if (const char* dir = std::getenv("FAKE_REMOTE_NODE_DIR")) {
    std::ofstream out(std::string(dir) + "/" + args->vm_id + ".args");
    for (int i = 0; i < argc; ++i) out << argv[i] << "\n";
    out << "key=" << key << "\n";
    // The pid the agent knows: the runtime may be pid 1 of its own PID namespace, while /proc (the agent's)
    // names it by its pid there.
    char self[32] = {};
    const ssize_t n = readlink("/proc/self", self, sizeof(self) - 1);
    out << "pid=" << (n > 0 ? std::string(self, static_cast<size_t>(n)) : std::to_string(getpid())) << "\n";
    out << "nspid=" << getpid() << "\n";
  }
  const std::string& id = args->vm_id;
  if (StartsWith(id, "exit")) return NumberAfter(id, 4);
  if (StartsWith(id, "noready")) {
    while (true) pause();
  }
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  if (StartsWith(id, "stubborn")) {
    signal(SIGTERM, SIG_IGN);
  } else {
    sigprocmask(SIG_BLOCK, &term, nullptr);
  }
  const char ready = 'R';
  if (write(args->ready_fd, &ready, 1) != 1) return 66;
  close(args->ready_fd);
  if (StartsWith(id, "crash")) {
    usleep(100 * 1000);
    return NumberAfter(id, 5);
  }
  if (StartsWith(id, "stubborn")) {
    while (true) pause();
  }
  int signal_number = 0;
  sigwait(&term, &signal_number);  // an orderly stop: exit 0
  return 0;
}
