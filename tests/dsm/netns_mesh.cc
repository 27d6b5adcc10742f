#include "tests/dsm/netns_mesh.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace coalesce::dsm::test {
namespace {

constexpr const char* kPrefix = "cdsm";

bool Run(const std::string& cmd, std::string* error) {
  int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  if (rc != 0) {
    if (error != nullptr) *error = absl::StrCat("`", cmd, "` failed (", rc, ")");
    return false;
  }
  return true;
}

}  // namespace

NetnsMesh::NetnsMesh(int nodes) : nodes_(nodes), pid_(::getpid()) {}

std::string NetnsMesh::NamespaceName(int i) const { return absl::StrCat(kPrefix, pid_, "n", i); }

int NetnsMesh::PairIndex(int i, int j) const {
  int lo = std::min(i, j), hi = std::max(i, j);
  return lo * nodes_ + hi;
}

std::string NetnsMesh::AddressOf(int j, int i) const {
  return absl::StrCat("198.18.", PairIndex(i, j), ".", j < i ? 1 : 2);
}

void NetnsMesh::RemoveStale() {
  FILE* f = ::popen("ip netns list 2>/dev/null", "r");
  if (f == nullptr) return;
  char line[256];
  std::vector<std::string> stale;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    std::string name(line);
    name = name.substr(0, name.find_first_of(" \n"));
    if (!absl::StartsWith(name, kPrefix)) continue;
    std::string rest = name.substr(std::string(kPrefix).size());
    int pid = 0;
    if (!absl::SimpleAtoi(rest.substr(0, rest.find('n')), &pid)) continue;
    if (pid > 0 && ::kill(pid, 0) == 0) continue;  // its run is still alive
    stale.push_back(name);
  }
  ::pclose(f);
  for (const auto& n : stale) Run("ip netns del " + n, nullptr);
}

bool NetnsMesh::Create() {
  if (::geteuid() != 0) {
    error_ = "network namespaces need root";
    return false;
  }
  RemoveStale();
  created_ = true;
  for (int i = 0; i < nodes_; ++i) {
    if (!Run("ip netns add " + NamespaceName(i), &error_)) return false;
    if (!Run("ip -n " + NamespaceName(i) + " link set lo up", &error_)) return false;
  }
  for (int i = 0; i < nodes_; ++i) {
    for (int j = i + 1; j < nodes_; ++j) {
      const int k = PairIndex(i, j);
      const std::string a = absl::StrCat("cd", pid_, "_", k, "a"), b = absl::StrCat("cd", pid_, "_", k, "b");
      if (!Run(absl::StrCat("ip link add ", a, " netns ", NamespaceName(i), " type veth peer name ", b, " netns ",
                            NamespaceName(j)),
               &error_)) {
        return false;
      }
      if (!Run(absl::StrCat("ip -n ", NamespaceName(i), " addr add ", AddressOf(i, j), "/24 dev ", a), &error_) ||
          !Run(absl::StrCat("ip -n ", NamespaceName(j), " addr add ", AddressOf(j, i), "/24 dev ", b), &error_) ||
          !Run(absl::StrCat("ip -n ", NamespaceName(i), " link set ", a, " up"), &error_) ||
          !Run(absl::StrCat("ip -n ", NamespaceName(j), " link set ", b, " up"), &error_)) {
        return false;
      }
    }
  }
  return true;
}

bool NetnsMesh::Enter(int i) const {
  const std::string path = "/run/netns/" + NamespaceName(i);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::setns(fd, CLONE_NEWNET) == 0;
  ::close(fd);
  return ok;
}

NetnsMesh::~NetnsMesh() {
  if (!created_) return;
  for (int i = 0; i < nodes_; ++i) Run("ip netns del " + NamespaceName(i), nullptr);  // takes the veths along
}

}  // namespace coalesce::dsm::test
