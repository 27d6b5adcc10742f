#include "hypervisor/vcpu/model_msrs.h"

#include <sys/utsname.h>

#include <atomic>
#include <charconv>
#include <cstring>

#include "hypervisor/base/log.h"
#include "hypervisor/vcpu/cpuid.h"

namespace coalesce {
namespace {

constexpr uint32_t kMsrK7Hwcr = 0xc0010015;
constexpr uint64_t kHwcrTscFreqSel = 1ull << 24;

bool KvmAcceptsTscFreqSel() {
  static const bool accepts = [] {
    utsname u{};
    if (::uname(&u) != 0) return true;
    const bool ok = KernelReleaseAtLeast(u.release, 6, 7);
    if (!ok) LOG_DEBUG("host kernel %s: KVM before 6.7 refuses HWCR.TscFreqSel; not set", u.release);
    return ok;
  }();
  return accepts;
}

// Cleared by the first refusal: later vCPUs (and resets) do not make the host log it again.
std::atomic<bool> try_tsc_freq_sel{true};

}  // namespace

bool HostCpuIsAmd() {
  const HostCpuidResult r = HostCpuid(0);
  char vendor[12];
  std::memcpy(vendor, &r.ebx, 4);
  std::memcpy(vendor + 4, &r.edx, 4);
  std::memcpy(vendor + 8, &r.ecx, 4);
  return std::memcmp(vendor, "AuthenticAMD", 12) == 0;
}

bool KernelReleaseAtLeast(std::string_view release, int major, int minor) {
  int got_major = 0, got_minor = 0;
  const char* p = release.data();
  const char* end = p + release.size();
  auto r1 = std::from_chars(p, end, got_major);
  if (r1.ec != std::errc() || r1.ptr == end || *r1.ptr != '.') return true;
  auto r2 = std::from_chars(r1.ptr + 1, end, got_minor);
  if (r2.ec != std::errc()) return true;
  return got_major > major || (got_major == major && got_minor >= minor);
}

void ApplyModelMsrs(VcpuFd& fd, uint32_t vcpu_id) {
  if (!HostCpuIsAmd() || !KvmAcceptsTscFreqSel() || !try_tsc_freq_sel.load()) return;
  if (absl::Status st = fd.SetMsrs({{kMsrK7Hwcr, kHwcrTscFreqSel}}); !st.ok()) {
    try_tsc_freq_sel.store(false);
    LOG_DEBUG("vcpu%u: HWCR.TscFreqSel not accepted by KVM: %s", vcpu_id, st.ToString());
  }
}

}  // namespace coalesce
