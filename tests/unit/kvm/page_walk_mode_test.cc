#include "hypervisor/kvm/page_walk_mode.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace coalesce {
namespace {

// A /sys/module tree of our own: each parameter a file holding what sysfs prints.
class ModuleTree {
 public:
  ModuleTree() {
    char tmpl[] = "/tmp/page-walk-mode-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  ~ModuleTree() { std::filesystem::remove_all(dir_); }
  void Set(const std::string& module, const std::string& name, const std::string& value) {
    std::filesystem::create_directories(dir_ + "/" + module + "/parameters");
    std::ofstream(dir_ + "/" + module + "/parameters/" + name) << value << "\n";
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

TEST_CASE("no KVM module loaded: nothing to say") {
  ModuleTree t;
  CHECK(PageWalksWriteNote(t.dir()).empty());
  CHECK(ShadowPagingWarning(t.dir()).empty());
}

TEST_CASE("AMD: nested paging's writing walks are named, and shadow paging is not advised") {
  ModuleTree t;
  t.Set("kvm_amd", "npt", "Y");
  const std::string note = PageWalksWriteNote(t.dir());
  CHECK(note.find("kvm_amd npt=Y") == 0);
  CHECK(note.find("npt=0") == std::string::npos);  // shadow paging is unsound for a coalesced guest
  CHECK(ShadowPagingWarning(t.dir()).empty());
}

TEST_CASE("Shadow paging is named as unsound for a guest changing page tables on several nodes") {
  ModuleTree t;
  t.Set("kvm_amd", "npt", "N");
  CHECK(PageWalksWriteNote(t.dir()).empty());
  CHECK(ShadowPagingWarning(t.dir()).find("kvm_amd npt=N: KVM uses shadow paging") == 0);
  ModuleTree intel;
  intel.Set("kvm_intel", "ept", "N");
  CHECK(ShadowPagingWarning(intel.dir()).find("kvm_intel ept=N") == 0);
  intel.Set("kvm_intel", "ept", "Y");
  CHECK(ShadowPagingWarning(intel.dir()).empty());
}

TEST_CASE("The remarks a coalesced run prints: each labelled, none where there is nothing to say") {
  ModuleTree none;
  CHECK(CoalescedPagingRemarks(none.dir()).empty());
  ModuleTree npt;
  npt.Set("kvm_amd", "npt", "Y");
  REQUIRE(CoalescedPagingRemarks(npt.dir()).size() == 1);
  CHECK(CoalescedPagingRemarks(npt.dir())[0].find("note: this host's kvm_amd npt=Y") == 0);
  ModuleTree shadow;
  shadow.Set("kvm_amd", "npt", "N");
  REQUIRE(CoalescedPagingRemarks(shadow.dir()).size() == 1);
  CHECK(CoalescedPagingRemarks(shadow.dir())[0].find("warning: this host's kvm_amd npt=N") == 0);
}

TEST_CASE("Intel: only EPT with its accessed/dirty flags counts walks as writes") {
  ModuleTree t;
  t.Set("kvm_intel", "ept", "Y");
  t.Set("kvm_intel", "eptad", "Y");
  CHECK(PageWalksWriteNote(t.dir()).find("kvm_intel eptad=Y") == 0);
  t.Set("kvm_intel", "eptad", "N");
  CHECK(PageWalksWriteNote(t.dir()).empty());
  t.Set("kvm_intel", "eptad", "Y");
  t.Set("kvm_intel", "ept", "N");  // shadow paging: the flags do not apply
  CHECK(PageWalksWriteNote(t.dir()).empty());
}

}  // namespace
}  // namespace coalesce
