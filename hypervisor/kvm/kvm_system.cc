#include "hypervisor/kvm/kvm_system.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/kvm/kvm_abi.h"

namespace coalesce {

absl::StatusOr<KvmSystem> KvmSystem::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return ErrnoStatus(absl::StrCat("cannot open ", path,
                                    err == ENOENT ? " (is KVM available on this host?)"
                                                  : " (does this user have access to it?)"),
                       err);
  }
  return FromFd(UniqueFd(fd), path);
}

absl::StatusOr<KvmSystem> KvmSystem::FromFd(UniqueFd fd, const std::string& what) {
  int version = ::ioctl(fd.get(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": KVM API version ", version, version < 0 ? " (not a KVM device?)" : "", ", expected ",
                     KVM_API_VERSION));
  }
  int mmap_size = ::ioctl(fd.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size <= 0) return ErrnoStatus("KVM_GET_VCPU_MMAP_SIZE");
  return KvmSystem(std::move(fd), mmap_size);
}

absl::StatusOr<VmFd> KvmSystem::CreateVm() const {
  int vm = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
  if (vm < 0) return ErrnoStatus("KVM_CREATE_VM");
  return VmFd(UniqueFd(vm), vcpu_mmap_size_);
}

absl::StatusOr<std::vector<kvm_cpuid_entry2>> KvmSystem::SupportedCpuid() const {
  // Laid out by hand: see kvm_abi.h for why struct kvm_cpuid2 cannot be used from C++.
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    std::vector<uint8_t> buf(kvm_abi::kCpuid2HeaderSize + n * sizeof(kvm_cpuid_entry2));
    std::memcpy(buf.data(), &n, sizeof(n));
    if (::ioctl(fd_.get(), kvm_abi::kGetSupportedCpuid, buf.data()) == 0) {
      uint32_t nent = 0;
      std::memcpy(&nent, buf.data(), sizeof(nent));
      std::vector<kvm_cpuid_entry2> out(nent);
      std::memcpy(out.data(), buf.data() + kvm_abi::kCpuid2HeaderSize, nent * sizeof(kvm_cpuid_entry2));
      return out;
    }
    if (errno != E2BIG) return ErrnoStatus("KVM_GET_SUPPORTED_CPUID");
  }
  return absl::InternalError("KVM_GET_SUPPORTED_CPUID: too many entries");
}

int KvmSystem::CheckExtension(int cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

}  // namespace coalesce
