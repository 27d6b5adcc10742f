// Where each page's directory entry (owner + copyset) lives: the page's "manager". A policy, so the protocol does
// not care: everything on the home node (the default, and what a joining node needs), or pages hashed over a fixed
// node set to spread manager load. Ivy-style probable-owner forwarding would be a third implementation whose
// ManagerOf() is a hint that may forward; the engine only ever asks this interface.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dsm/wire_format.h"

namespace coalesce::dsm {

class DirectoryPlacement {
 public:
  virtual ~DirectoryPlacement() = default;
  [[nodiscard]] virtual NodeId ManagerOf(uint64_t page) const = 0;
  // True when nodes may join or leave under this policy (a hash over a fixed set cannot).
  [[nodiscard]] virtual bool SupportsMembershipChange() const = 0;
};

// Every page is managed by `home`.
std::unique_ptr<DirectoryPlacement> MakeHomePlacement(NodeId home);
// Page p is managed by nodes[p % nodes.size()].
std::unique_ptr<DirectoryPlacement> MakeHashPlacement(std::vector<NodeId> nodes);

}  // namespace coalesce::dsm
