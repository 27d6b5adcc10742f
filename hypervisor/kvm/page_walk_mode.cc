#include "hypervisor/kvm/page_walk_mode.h"

#include <fstream>

namespace coalesce {
namespace {

// A module parameter as sysfs prints it ("Y" or "N" for a boolean); empty where the module or parameter is absent.
std::string Parameter(const std::string& module_dir, const std::string& module, const std::string& name) {
  std::ifstream in(module_dir + "/" + module + "/parameters/" + name);
  std::string value;
  if (!(in >> value)) return "";
  return value;
}

bool On(const std::string& value) { return value == "Y" || value == "1"; }

}  // namespace

std::string PageWalksWriteNote(const std::string& module_dir) {
  if (On(Parameter(module_dir, "kvm_amd", "npt"))) {
    // Shadow paging would keep them shared, and is unsound for a coalesced guest (ShadowPagingWarning): no advice.
    return "kvm_amd npt=Y: nested paging counts every guest page walk as a write to the guest's page tables, so "
           "they move between nodes on each walk (docs/DSM.md)";
  }
  if (On(Parameter(module_dir, "kvm_intel", "ept")) && On(Parameter(module_dir, "kvm_intel", "eptad"))) {
    return "kvm_intel eptad=Y: EPT's accessed/dirty flags count every guest page walk as a write to the guest's "
           "page tables, so they move between nodes on each walk; without them they stay shared (modprobe -r "
           "kvm_intel; modprobe kvm_intel eptad=0; docs/DSM.md)";
  }
  return "";
}

std::string ShadowPagingWarning(const std::string& module_dir) {
  std::string parameter;
  if (const std::string npt = Parameter(module_dir, "kvm_amd", "npt"); !npt.empty() && !On(npt)) {
    parameter = "kvm_amd npt=N";
  } else if (const std::string ept = Parameter(module_dir, "kvm_intel", "ept"); !ept.empty() && !On(ept)) {
    parameter = "kvm_intel ept=N";
  } else {
    return "";
  }
  return parameter +
         ": KVM uses shadow paging, whose page tables do not see a guest page table that another node changed: a "
         "guest that changes its page tables on several nodes (Linux) may crash; nested paging or EPT is needed "
         "for it (docs/DSM.md, \"Shadow paging\")";
}

std::vector<std::string> CoalescedPagingRemarks(const std::string& module_dir) {
  std::vector<std::string> remarks;
  if (std::string note = PageWalksWriteNote(module_dir); !note.empty()) remarks.push_back("note: this host's " + note);
  if (std::string warning = ShadowPagingWarning(module_dir); !warning.empty()) {
    remarks.push_back("warning: this host's " + warning);
  }
  return remarks;
}

}  // namespace coalesce
