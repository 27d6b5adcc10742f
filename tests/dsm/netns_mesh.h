// Network namespaces for multi-host DSM tests on one machine: one namespace per node and a veth pair per node
// pair, addressed from 198.18.0.0/15 (RFC 2544's benchmarking range, never routed), pair k as 198.18.k.1 (lower
// node) and 198.18.k.2 (higher node). Names carry the creating process id, so runs never collide, and namespaces
// left by a dead run (its pid gone) are removed first. Everything is deleted in the destructor.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace coalesce::dsm::test {

class NetnsMesh final {
 public:
  explicit NetnsMesh(int nodes);
  ~NetnsMesh();
  // False (with error()) when namespaces cannot be made here (not root, no `ip`).
  bool Create();
  // In the calling (single-threaded, freshly forked) process: enter node i's namespace.
  bool Enter(int i) const;
  // Address of node j on the link between i and j.
  [[nodiscard]] std::string AddressOf(int j, int i) const;
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] std::string NamespaceName(int i) const;

  static void RemoveStale();

 private:
  [[nodiscard]] int PairIndex(int i, int j) const;
  int nodes_;
  pid_t pid_;
  bool created_ = false;
  std::string error_;
};

}  // namespace coalesce::dsm::test
