// The host-kernel version gate of the model MSRs (HWCR.TscFreqSel needs KVM from Linux 6.7).
#include "hypervisor/vcpu/model_msrs.h"

#include <catch2/catch.hpp>

namespace coalesce {
namespace {

TEST_CASE("kernel release comparison reads major.minor of uname -r") {
  CHECK_FALSE(KernelReleaseAtLeast("6.1.0-57-amd64", 6, 7));
  CHECK_FALSE(KernelReleaseAtLeast("5.19.17", 6, 7));
  CHECK(KernelReleaseAtLeast("6.7.0", 6, 7));
  CHECK(KernelReleaseAtLeast("6.18.44-fc-v657-gpu", 6, 7));
  CHECK(KernelReleaseAtLeast("7.0.1", 6, 7));
  CHECK(KernelReleaseAtLeast("6.10", 6, 7));  // 10 > 7: numbers, not strings
}

TEST_CASE("an unparsable kernel release is not held against KVM") {
  CHECK(KernelReleaseAtLeast("", 6, 7));
  CHECK(KernelReleaseAtLeast("linux", 6, 7));
  CHECK(KernelReleaseAtLeast("6", 6, 7));
}

}  // namespace
}  // namespace coalesce
