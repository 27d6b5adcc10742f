// The /dev/kvm system fd. With vm_fd.h and vcpu_fd.h, the only code in Coalesce that calls ioctl() on KVM.
#pragma once

#include <linux/kvm.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/base/unique_fd.h"
#include "hypervisor/kvm/vm_fd.h"

namespace coalesce {

class KvmSystem final {
 public:
  // Opens the KVM device (normally /dev/kvm) and checks the API version.
  static absl::StatusOr<KvmSystem> Open(const std::string& path = "/dev/kvm");
  // Adopts a KVM device fd opened by someone else (a runtime in a user namespace gets its agent's); `what` names it
  // in errors.
  static absl::StatusOr<KvmSystem> FromFd(UniqueFd fd, const std::string& what);

  [[nodiscard]] absl::StatusOr<VmFd> CreateVm() const;
  [[nodiscard]] absl::StatusOr<std::vector<kvm_cpuid_entry2>> SupportedCpuid() const;
  // KVM_CHECK_EXTENSION; 0 when absent.
  [[nodiscard]] int CheckExtension(int cap) const;
  [[nodiscard]] int vcpu_mmap_size() const { return vcpu_mmap_size_; }

 private:
  KvmSystem(UniqueFd fd, int vcpu_mmap_size) : fd_(std::move(fd)), vcpu_mmap_size_(vcpu_mmap_size) {}
  UniqueFd fd_;
  int vcpu_mmap_size_ = 0;
};

}  // namespace coalesce
