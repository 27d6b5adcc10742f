// A KVM_RUN exit decoded into a typed value, in one place (DecodeExit), so no other code reads kvm_run's union.
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <variant>

namespace coalesce {

namespace exit {

// Port I/O. `data` points into kvm_run and holds size*count bytes; count > 1 is a string (rep ins/outs)
// instruction, which the vCPU loop splits into `count` single accesses so devices never see repeats.
struct IoIn {
  uint16_t port;
  uint8_t size;
  uint32_t count;
  std::span<uint8_t> data;
};
struct IoOut {
  uint16_t port;
  uint8_t size;
  uint32_t count;
  std::span<const uint8_t> data;
};
// MMIO. For reads, the handler fills `data` and KVM completes the load on the next KVM_RUN.
struct MmioRead {
  uint64_t addr;
  std::span<uint8_t> data;
};
struct MmioWrite {
  uint64_t addr;
  std::span<const uint8_t> data;
};
struct Hlt {};
// Triple fault or similar: the guest is dead.
struct Shutdown {};
// KVM_RUN returned EINTR (a kick) or immediate_exit was set.
struct Interrupted {};
// The window asked for with request_interrupt_window is open.
struct IrqWindowOpen {};
struct InternalError {
  uint32_t suberror;
  uint32_t ndata;
  // For KVM_INTERNAL_ERROR_EMULATION with KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES in data[0]:
  // data[1] = insn length, data[2..] = instruction bytes.
  std::array<uint64_t, 16> data;
};
struct FailEntry {
  uint64_t reason;
  uint32_t cpu;
};
struct SystemEvent {
  uint32_t type;
};
struct Debug {
  kvm_debug_exit_arch arch;
};
// RDMSR / WRMSR of an MSR handed to user space (VmFd::SendMsrsToUserSpace). The handler sets *data (reads) and
// *error (1: the guest gets #GP) in kvm_run; KVM completes the instruction on the next KVM_RUN.
struct MsrRead {
  uint32_t index;
  __u64* data;  // kvm_run's own type (unsigned long long), not uint64_t
  uint8_t* error;
};
struct MsrWrite {
  uint32_t index;
  uint64_t data;
  uint8_t* error;
};
struct Unknown {
  uint32_t reason;
};

}  // namespace exit

using VcpuExit = std::variant<exit::IoIn, exit::IoOut, exit::MmioRead, exit::MmioWrite, exit::Hlt,
                              exit::Shutdown, exit::Interrupted, exit::IrqWindowOpen,
                              exit::InternalError, exit::FailEntry, exit::SystemEvent, exit::Debug,
                              exit::MsrRead, exit::MsrWrite, exit::Unknown>;

// Decodes run->exit_reason. Only called right after a successful KVM_RUN.
VcpuExit DecodeExit(kvm_run* run);

// Short name for counters and logs ("io_in", "mmio_write", ...).
const char* ExitKindName(const VcpuExit& e);
// Number of distinct exit kinds (the variant's size); ExitKindIndex(e) < kExitKinds.
inline constexpr size_t kExitKinds = std::variant_size_v<VcpuExit>;
inline size_t ExitKindIndex(const VcpuExit& e) { return e.index(); }
const char* ExitKindNameByIndex(size_t index);

}  // namespace coalesce
