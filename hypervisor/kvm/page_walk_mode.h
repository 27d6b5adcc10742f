// How the host's KVM translates guest addresses, read from the KVM modules' parameters, and what that means for
// a coalesced VM (docs/DSM.md):
// - hardware walks that count as writes to the guest's page tables (AMD nested paging; Intel EPT with its
//   accessed/dirty flags) pull those pages Modified onto every node that walks them, so they bounce between
//   nodes ("guest page tables bounce"); EPT without A/D flags walks them with reads, and they stay Shared;
// - shadow paging (nested paging or EPT off) is unsound: KVM's shadow page tables follow a guest page table
//   through the guest's own writes, which they trap, and do not see its contents replaced with another node's
//   newer copy, so a vCPU keeps translating through the old entries ("Shadow paging").
#pragma once

#include <string>
#include <vector>

namespace coalesce {

// Empty where walks do not write page tables (or no KVM module is loaded); else the parameter that makes them,
// and what to set instead: "kvm_amd npt=Y (modprobe kvm_amd npt=0 ...)". `module_dir` is /sys/module (a
// parameter so tests can point it at a tree of their own).
std::string PageWalksWriteNote(const std::string& module_dir = "/sys/module");

// Empty unless KVM is loaded with shadow paging ("kvm_amd npt=N", "kvm_intel ept=N"); else why a guest that
// changes its page tables on several nodes (Linux) may crash on this host.
std::string ShadowPagingWarning(const std::string& module_dir = "/sys/module");

// Both of the above as a coalesced run and an edge agent print them, each labelled ("note: this host's ...",
// "warning: this host's ..."); nothing for a host with neither.
std::vector<std::string> CoalescedPagingRemarks(const std::string& module_dir = "/sys/module");

}  // namespace coalesce
