// Runs DSM nodes as separate processes (fork before any thread exists), each with its own memory and DsmNode, and
// drives them through phases over pipes: ports -> peers -> ready -> go -> done -> check -> stop. Optionally each
// node lives in its own network namespace (NetnsMesh). A node whose DsmNode reports a fatal error exits with
// kPeerLostExit at once, which is what the failure test expects of the survivors.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dsm/dsm_node.h"

namespace coalesce::dsm::test {

inline constexpr int kPeerLostExit = 3;
inline constexpr int kSkipExit = 77;  // meson's "skipped"

// What one node does. `run` executes the workload (returns a one-line result for the parent, or "FAIL ...");
// `check` runs after every node finished `run`.
struct NodeRole {
  // Called in the child before the DsmNode exists (e.g. to enter a network namespace). Empty: nothing.
  std::function<bool(int index)> before_node;
  // Creates the DsmNode for this index (own memory by default).
  std::function<absl::StatusOr<std::unique_ptr<DsmNode>>(int index, const DsmNodeConfig& config)> make_node;
  std::function<std::string(int index, DsmNode& node)> run;
  std::function<std::string(int index, DsmNode& node)> check;
};

struct ClusterOptions {
  int nodes = 2;
  std::vector<std::string> listen_address;  // per node; empty = 127.0.0.1 for all
  // host of node j as seen by node i (netns meshes use per-pair addresses); empty = listen address of j
  std::function<std::string(int i, int j)> peer_host;
  absl::Duration request_timeout = absl::Seconds(5);
  absl::Duration peer_timeout = absl::Seconds(3);
  absl::Duration phase_timeout = absl::Seconds(60);
};

struct NodeOutcome {
  std::string result;  // the line `run` returned
  std::string check;   // the line `check` returned
  int exit_code = -1;  // from waitpid; -1 unknown, 128+sig if signalled
};

class ProcessCluster {
 public:
  ProcessCluster(ClusterOptions options, NodeRole role) : options_(std::move(options)), role_(std::move(role)) {}
  ~ProcessCluster();
  // Forks the nodes and takes them to the point where every node is connected to every other.
  bool Start();
  // Releases the workload; returns when every node reported (or failed).
  bool RunAndCheck();
  // For the failure test: sends "go" only.
  bool Go();
  void Kill(int index, int sig);
  // Waits for node exit statuses (up to timeout); returns how long it took.
  absl::Duration WaitAll(absl::Duration timeout);
  [[nodiscard]] const std::vector<NodeOutcome>& outcomes() const { return outcomes_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  bool SendAll(const std::string& line);
  bool ReadLine(int index, std::string* line, absl::Duration timeout);
  [[noreturn]] void ChildMain(int index, int in_fd, int out_fd);

  ClusterOptions options_;
  NodeRole role_;
  std::vector<pid_t> pids_;
  std::vector<int> to_child_;
  std::vector<int> from_child_;
  std::vector<std::string> buffers_;
  std::vector<NodeOutcome> outcomes_;
  std::string error_;
};

}  // namespace coalesce::dsm::test
