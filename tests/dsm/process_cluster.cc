#include "tests/dsm/process_cluster.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace coalesce::dsm::test {
namespace {

void WriteLine(int fd, const std::string& line) {
  std::string s = line + "\n";
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// Blocking line read for the child side.
bool ChildReadLine(int fd, std::string* line) {
  line->clear();
  char c;
  for (;;) {
    ssize_t n = ::read(fd, &c, 1);
    if (n <= 0) return false;
    if (c == '\n') return true;
    line->push_back(c);
  }
}

}  // namespace

ProcessCluster::~ProcessCluster() {
  for (pid_t p : pids_) {
    if (p > 0) ::kill(p, SIGKILL);
  }
  for (pid_t p : pids_) {
    if (p > 0) ::waitpid(p, nullptr, 0);
  }
  for (int fd : to_child_) ::close(fd);
  for (int fd : from_child_) ::close(fd);
}

void ProcessCluster::ChildMain(int index, int in_fd, int out_fd) {
  if (role_.before_node && !role_.before_node(index)) {
    WriteLine(out_fd, "FAIL before_node");
    ::_exit(1);
  }
  DsmNodeConfig cfg;
  cfg.self = static_cast<NodeId>(index);
  cfg.home = 0;
  cfg.listen_address = options_.listen_address.empty() ? "127.0.0.1" : options_.listen_address[index];
  cfg.request_timeout = options_.request_timeout;
  cfg.peer_timeout = options_.peer_timeout;
  cfg.on_error = [out_fd, index](const absl::Status& s) {
    WriteLine(out_fd, absl::StrCat("ERROR ", s.ToString()));
    std::fprintf(stderr, "node %d: DSM error, exiting: %s\n", index, s.ToString().c_str());
    ::_exit(kPeerLostExit);
  };
  auto node_or = role_.make_node ? role_.make_node(index, cfg) : DsmNode::CreateWithOwnMemory(cfg, 1 << 20);
  if (!node_or.ok()) {
    WriteLine(out_fd, absl::StrCat("FAIL create: ", node_or.status().ToString()));
    ::_exit(1);
  }
  DsmNode& node = **node_or;
  WriteLine(out_fd, absl::StrCat("port ", node.port()));
  std::string line;
  if (!ChildReadLine(in_fd, &line)) ::_exit(1);
  // "peers host:port host:port ..." indexed by node id.
  std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
  std::vector<NodeId> others;
  for (int j = 1; j < static_cast<int>(parts.size()); ++j) {
    const int peer = j - 1;
    if (peer == index) continue;
    others.push_back(static_cast<NodeId>(peer));
    if (peer > index) continue;  // the larger id connects
    std::vector<std::string> hp = absl::StrSplit(parts[j], ':');
    uint32_t port = 0;
    if (hp.size() != 2 || !absl::SimpleAtoi(hp[1], &port)) ::_exit(1);
    absl::Status s = node.Connect(DsmPeer{static_cast<NodeId>(peer), hp[0], static_cast<uint16_t>(port)});
    if (!s.ok()) {
      WriteLine(out_fd, absl::StrCat("FAIL connect: ", s.ToString()));
      ::_exit(1);
    }
  }
  absl::Status s = node.WaitForPeers(others, absl::Seconds(20));
  if (!s.ok()) {
    WriteLine(out_fd, absl::StrCat("FAIL peers: ", s.ToString()));
    ::_exit(1);
  }
  WriteLine(out_fd, "ready");
  if (!ChildReadLine(in_fd, &line) || line != "go") ::_exit(1);
  WriteLine(out_fd, "done " + role_.run(index, node));
  if (!ChildReadLine(in_fd, &line) || line != "check") ::_exit(1);
  WriteLine(out_fd, "checked " + (role_.check ? role_.check(index, node) : std::string("ok")));
  if (!ChildReadLine(in_fd, &line) || line != "stop") ::_exit(1);
  node.Stop();
  ::_exit(0);
}

bool ProcessCluster::Start() {
  const int n = options_.nodes;
  std::fflush(nullptr);
  for (int i = 0; i < n; ++i) {
    int down[2], up[2];
    if (::pipe2(down, O_CLOEXEC) < 0 || ::pipe2(up, O_CLOEXEC) < 0) return false;
    pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test driver
      ::close(down[1]);
      ::close(up[0]);
      for (int fd : to_child_) ::close(fd);
      for (int fd : from_child_) ::close(fd);
      ChildMain(i, down[0], up[1]);
    }
    ::close(down[0]);
    ::close(up[1]);
    pids_.push_back(pid);
    to_child_.push_back(down[1]);
    from_child_.push_back(up[0]);
  }
  buffers_.assign(n, "");
  outcomes_.assign(n, NodeOutcome{});
  std::vector<std::string> addr(n);
  for (int i = 0; i < n; ++i) {
    std::string line;
    if (!ReadLine(i, &line, options_.phase_timeout) || line.rfind("port ", 0) != 0) {
      error_ = absl::StrCat("node ", i, " did not start: ", line);
      return false;
    }
    addr[i] = line.substr(5);
  }
  for (int i = 0; i < n; ++i) {
    std::string peers = "peers";
    for (int j = 0; j < n; ++j) {
      std::string host = options_.peer_host && j != i ? options_.peer_host(i, j)
                         : options_.listen_address.empty() ? "127.0.0.1"
                                                           : options_.listen_address[j];
      absl::StrAppend(&peers, " ", host, ":", addr[j]);
    }
    WriteLine(to_child_[i], peers);
  }
  for (int i = 0; i < n; ++i) {
    std::string line;
    if (!ReadLine(i, &line, options_.phase_timeout) || line != "ready") {
      error_ = absl::StrCat("node ", i, " did not connect: ", line);
      return false;
    }
  }
  return true;
}

bool ProcessCluster::SendAll(const std::string& line) {
  for (int fd : to_child_) WriteLine(fd, line);
  return true;
}

bool ProcessCluster::Go() { return SendAll("go"); }

bool ProcessCluster::RunAndCheck() {
  SendAll("go");
  for (int i = 0; i < options_.nodes; ++i) {
    std::string line;
    if (!ReadLine(i, &line, options_.phase_timeout) || line.rfind("done ", 0) != 0) {
      error_ = absl::StrCat("node ", i, " failed its run: ", line);
      return false;
    }
    outcomes_[i].result = line.substr(5);
  }
  SendAll("check");
  for (int i = 0; i < options_.nodes; ++i) {
    std::string line;
    if (!ReadLine(i, &line, options_.phase_timeout) || line.rfind("checked ", 0) != 0) {
      error_ = absl::StrCat("node ", i, " failed its check: ", line);
      return false;
    }
    outcomes_[i].check = line.substr(8);
  }
  SendAll("stop");
  WaitAll(options_.phase_timeout);
  for (int i = 0; i < options_.nodes; ++i) {
    if (outcomes_[i].exit_code != 0) {
      error_ = absl::StrCat("node ", i, " exited with ", outcomes_[i].exit_code);
      return false;
    }
  }
  return true;
}

void ProcessCluster::Kill(int index, int sig) { ::kill(pids_[index], sig); }

absl::Duration ProcessCluster::WaitAll(absl::Duration timeout) {
  const absl::Time start = absl::Now();
  int left = 0;
  for (pid_t p : pids_) left += p > 0 ? 1 : 0;
  while (left > 0 && absl::Now() - start < timeout) {
    for (size_t i = 0; i < pids_.size(); ++i) {
      if (pids_[i] <= 0) continue;
      int st = 0;
      pid_t r = ::waitpid(pids_[i], &st, WNOHANG);
      if (r == pids_[i]) {
        outcomes_[i].exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        pids_[i] = -1;
        --left;
      }
    }
    if (left > 0) absl::SleepFor(absl::Milliseconds(5));
  }
  return absl::Now() - start;
}

bool ProcessCluster::ReadLine(int index, std::string* line, absl::Duration timeout) {
  std::string& buf = buffers_[index];
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    size_t nl = buf.find('\n');
    if (nl != std::string::npos) {
      *line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      return true;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p{from_child_[index], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <= 0) continue;
    char tmp[4096];
    ssize_t n = ::read(from_child_[index], tmp, sizeof(tmp));
    if (n <= 0) {
      *line = buf;
      return false;
    }
    buf.append(tmp, static_cast<size_t>(n));
  }
}

}  // namespace coalesce::dsm::test
