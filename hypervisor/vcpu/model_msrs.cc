#include "hypervisor/vcpu/model_msrs.h"

#include <cstring>

#include "hypervisor/base/log.h"
#include "hypervisor/vcpu/cpuid.h"

namespace coalesce {
namespace {

constexpr uint32_t kMsrK7Hwcr = 0xc0010015;
constexpr uint64_t kHwcrTscFreqSel = 1ull << 24;

bool HostIsAmd() {
  const HostCpuidResult r = HostCpuid(0);
  char vendor[12];
  std::memcpy(vendor, &r.ebx, 4);
  std::memcpy(vendor + 4, &r.edx, 4);
  std::memcpy(vendor + 8, &r.ecx, 4);
  return std::memcmp(vendor, "AuthenticAMD", 12) == 0;
}

}  // namespace

void ApplyModelMsrs(VcpuFd& fd, uint32_t vcpu_id) {
  if (!HostIsAmd()) return;
  if (absl::Status st = fd.SetMsrs({{kMsrK7Hwcr, kHwcrTscFreqSel}}); !st.ok()) {
    LOG_DEBUG("vcpu%u: HWCR.TscFreqSel not accepted by KVM: %s", vcpu_id, st.ToString());
  }
}

}  // namespace coalesce
