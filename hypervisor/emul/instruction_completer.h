// Entry point for the vCPU loop: completes, in user space, the instruction KVM's in-kernel emulator gave up
// on (KVM_EXIT_INTERNAL_ERROR, suberror KVM_INTERNAL_ERROR_EMULATION). On PVM hosts this happens for
// instructions such as lock cmpxchg16b, xrstor and int3; with hardware virtualization it never happens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/kvm/vcpu_exit.h"
#include "hypervisor/kvm/vcpu_fd.h"
#include "hypervisor/memory/guest_memory.h"

namespace coalesce {

// The instruction bytes KVM put in the exit, if it did (KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES:
// data[0] = flags, then a u8 length followed directly by up to 15 bytes, starting at data[1]).
std::vector<uint8_t> InstructionBytesFromExit(const exit::InternalError& error);

struct CompletedInstructions {
  std::string mnemonic;    // the failed instruction ("cmpxchg16b", "xrstor64", "vex128.66.0f.fe", ...)
  uint32_t continued = 0;  // instructions after it completed in the same exit (see below)
};

// Decodes and executes the failed instruction on `vcpu`, writing back registers / FPU state / memory and
// injecting the exception the instruction raises. When the instruction is not handled (or the exit is not an
// emulation failure) returns an error whose message carries RIP, the bytes in hex and the opcode; the guest
// state is then unchanged and the VMM should stop with that message.
//
// After a SIMD instruction, the ones that follow it are completed too, as long as they are SIMD or plain
// register-only integer instructions and raise nothing (at most kMaxContinued): PVM's emulator would fail
// on each SIMD one in turn, and one exit per instruction of a vectorized loop is what made Debian's
// blake2s self-test take minutes. Vector state is read and written back once for the whole run.
inline constexpr uint32_t kMaxContinued = 256;
absl::StatusOr<CompletedInstructions> CompleteFailedInstruction(VcpuFd& vcpu, const GuestMemory& memory,
                                                                const exit::InternalError& error);

}  // namespace coalesce
