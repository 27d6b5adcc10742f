#include "edge_monitor/profile_overrides.h"

#include <algorithm>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "edge_monitor/host_port.h"

namespace coalesce {
namespace {

template <typename Pred>
void RemoveIds(google::protobuf::RepeatedField<uint32_t>* ids, Pred pred) {
  ids->erase(std::remove_if(ids->begin(), ids->end(), pred), ids->end());
}

// Addresses compare in their canonical form, so "[::1]:7001" written two ways is one edge.
std::string CanonicalAddress(const std::string& address) {
  auto hp = ParseHostPort(address);
  return hp.ok() ? hp->ToString() : address;
}

// Drops the edges that had vCPUs before the overrides and have none now. An edge the profile itself left empty stays,
// so ValidateProfile still reports it.
void DropEmptiedEdges(const std::vector<bool>& had_vcpus, pb::Profile* profile) {
  auto* edges = profile->mutable_edge();
  for (int i = std::min<int>(edges->size(), static_cast<int>(had_vcpus.size())) - 1; i >= 0; --i) {
    if (had_vcpus[static_cast<size_t>(i)] && edges->Get(i).vcpus_size() == 0) edges->DeleteSubrange(i, 1);
  }
}

}  // namespace

absl::Status ApplyOverrides(const ProfileOverrides& overrides, pb::Profile* profile) {
  // Reject conflicting --edge flags before touching the profile.
  absl::flat_hash_map<uint32_t, const EdgePlacement*> owner;
  for (const EdgePlacement& placement : overrides.edges) {
    for (uint32_t id : placement.vcpus) {
      auto [it, inserted] = owner.emplace(id, &placement);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat("vCPU ", id, " is given to both --edge ", it->second->address,
                                                       " and --edge ", placement.address));
      }
    }
  }

  std::vector<bool> had_vcpus;
  for (const pb::EdgeNode& edge : profile->edge()) had_vcpus.push_back(edge.vcpus_size() > 0);

  pb::Guest* guest = profile->mutable_guest();
  if (overrides.kernel) guest->set_kernel(*overrides.kernel);
  if (overrides.initrd) guest->set_initrd(*overrides.initrd);
  if (overrides.cmdline) guest->set_cmdline(*overrides.cmdline);
  if (overrides.memory) guest->set_memory(*overrides.memory);
  if (overrides.max_memory) guest->set_max_memory(*overrides.max_memory);

  if (overrides.max_vcpus) guest->set_max_vcpus(*overrides.max_vcpus);
  if (overrides.vcpus) {
    const uint32_t old_count = guest->vcpus();
    const uint32_t new_count = *overrides.vcpus;
    guest->set_vcpus(new_count);
    for (uint32_t id = old_count; id < new_count; ++id) {
      // An id absent at boot that the profile placed (on an edge) keeps its place.
      const auto& home = profile->home().vcpus();
      bool placed = std::find(home.begin(), home.end(), id) != home.end();
      for (const pb::EdgeNode& edge : profile->edge()) {
        placed |= std::find(edge.vcpus().begin(), edge.vcpus().end(), id) != edge.vcpus().end();
      }
      if (!placed) profile->mutable_home()->add_vcpus(id);
    }
    const uint32_t possible = std::max(new_count, guest->max_vcpus());
    if (possible < old_count) {
      auto too_big = [possible](uint32_t id) { return id >= possible; };
      RemoveIds(profile->mutable_home()->mutable_vcpus(), too_big);
      for (pb::EdgeNode& edge : *profile->mutable_edge()) RemoveIds(edge.mutable_vcpus(), too_big);
    }
  }

  for (const EdgePlacement& placement : overrides.edges) {
    auto listed = [&placement](uint32_t id) {
      return std::find(placement.vcpus.begin(), placement.vcpus.end(), id) != placement.vcpus.end();
    };
    const std::string address = CanonicalAddress(placement.address);
    RemoveIds(profile->mutable_home()->mutable_vcpus(), listed);
    pb::EdgeNode* target = nullptr;
    for (pb::EdgeNode& edge : *profile->mutable_edge()) {
      if (CanonicalAddress(edge.address()) == address) {
        target = &edge;
      } else {
        RemoveIds(edge.mutable_vcpus(), listed);
      }
    }
    if (target == nullptr) {
      target = profile->add_edge();
      target->set_address(placement.address);
    }
    for (uint32_t id : placement.vcpus) {
      if (std::find(target->vcpus().begin(), target->vcpus().end(), id) == target->vcpus().end()) {
        target->add_vcpus(id);
      }
    }
  }
  DropEmptiedEdges(had_vcpus, profile);
  return absl::OkStatus();
}

}  // namespace coalesce

