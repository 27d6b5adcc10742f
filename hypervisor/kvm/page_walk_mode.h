// Whether the host's KVM lets the hardware walk guest page tables in a way that counts each walk as a write to
// them (AMD nested paging; Intel EPT with its accessed/dirty flags), read from the KVM modules' parameters. In a
// coalesced VM such walks pull the guest's page-table pages Modified onto every node that walks them, so they
// bounce between nodes (docs/DSM.md, "guest page tables bounce"); KVM's shadow paging (AMD) or EPT without A/D
// flags (Intel) walks them with reads and they stay Shared.
#pragma once

#include <string>

namespace coalesce {

// Empty where walks do not write page tables (or no KVM module is loaded); else the parameter that makes them,
// and what to set instead: "kvm_amd npt=Y (modprobe kvm_amd npt=0 ...)". `module_dir` is /sys/module (a
// parameter so tests can point it at a tree of their own).
std::string PageWalksWriteNote(const std::string& module_dir = "/sys/module");

}  // namespace coalesce
