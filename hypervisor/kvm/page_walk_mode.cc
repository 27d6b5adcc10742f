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
    return "kvm_amd npt=Y: nested paging counts every guest page walk as a write to the guest's page tables, so "
           "they move between nodes on each walk; shadow paging keeps them shared (modprobe -r kvm_amd; modprobe "
           "kvm_amd npt=0; docs/DSM.md)";
  }
  if (On(Parameter(module_dir, "kvm_intel", "ept")) && On(Parameter(module_dir, "kvm_intel", "eptad"))) {
    return "kvm_intel eptad=Y: EPT's accessed/dirty flags count every guest page walk as a write to the guest's "
           "page tables, so they move between nodes on each walk; without them they stay shared (modprobe -r "
           "kvm_intel; modprobe kvm_intel eptad=0; docs/DSM.md)";
  }
  return "";
}

}  // namespace coalesce
