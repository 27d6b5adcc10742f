// Fixes for using Linux 6.1's uapi KVM headers from C++.
//
// Those headers declare flexible arrays with __DECLARE_FLEX_ARRAY, which wraps the array in a struct
// beginning with an empty struct. An empty struct has size 0 in C but 1 in C++, so in C++ sizeof() of
// kvm_cpuid2, kvm_msrs and kvm_xsave grows, the ioctl numbers built from those sizes (_IOWR(..., struct
// ...)) change, and the flexible arrays move: the kernel answers EINVAL or ENOTTY. These are the C values,
// checked by static_asserts against the fixed part of each struct. Only hypervisor/kvm uses them.
#pragma once

#include <linux/kvm.h>

#include <cstddef>

namespace coalesce::kvm_abi {

// kvm_cpuid2 and kvm_msrs: a 4-byte count, 4 bytes of padding, then the entries.
inline constexpr size_t kCpuid2HeaderSize = 8;
inline constexpr size_t kMsrsHeaderSize = 8;
// kvm_xsave: 4096 bytes of region[]; the flexible extra[] is only for KVM_GET_XSAVE2 with a bigger buffer.
inline constexpr size_t kXsaveSize = 4096;

inline constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kCpuid2HeaderSize);
inline constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kCpuid2HeaderSize);
inline constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, kMsrsHeaderSize);
inline constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, kMsrsHeaderSize);
inline constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, kXsaveSize);
inline constexpr unsigned long kSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, kXsaveSize);

static_assert(sizeof(kvm_cpuid_entry2) == 40);
static_assert(sizeof(kvm_msr_entry) == 16);
static_assert(offsetof(kvm_xsave, region) == 0 && sizeof(kvm_xsave::region) == kXsaveSize);

}  // namespace coalesce::kvm_abi
