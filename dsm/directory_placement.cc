#include "dsm/directory_placement.h"

#include <utility>

namespace coalesce::dsm {
namespace {

class HomePlacement final : public DirectoryPlacement {
 public:
  explicit HomePlacement(NodeId home) : home_(home) {}
  NodeId ManagerOf(uint64_t) const override { return home_; }
  bool SupportsMembershipChange() const override { return true; }

 private:
  NodeId home_;
};

class HashPlacement final : public DirectoryPlacement {
 public:
  explicit HashPlacement(std::vector<NodeId> nodes) : nodes_(std::move(nodes)) {}
  NodeId ManagerOf(uint64_t page) const override { return nodes_[page % nodes_.size()]; }
  bool SupportsMembershipChange() const override { return false; }

 private:
  std::vector<NodeId> nodes_;
};

}  // namespace

std::unique_ptr<DirectoryPlacement> MakeHomePlacement(NodeId home) { return std::make_unique<HomePlacement>(home); }

std::unique_ptr<DirectoryPlacement> MakeHashPlacement(std::vector<NodeId> nodes) {
  if (nodes.empty()) return nullptr;
  return std::make_unique<HashPlacement>(std::move(nodes));
}

}  // namespace coalesce::dsm
