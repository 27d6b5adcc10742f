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

// Decodes and executes the failed instruction on `vcpu`, writing back registers / FPU state / memory and
// injecting the exception the instruction raises. Returns the mnemonic handled ("cmpxchg16b", "xrstor64",
// "int3", ...), for per-instruction counters. When the instruction is not handled (or the exit is not an
// emulation failure) returns an error whose message carries RIP, the bytes in hex and the opcode; the guest
// state is then unchanged and the VMM should stop with that message.
absl::StatusOr<std::string> CompleteFailedInstruction(VcpuFd& vcpu, const GuestMemory& memory,
                                                      const exit::InternalError& error);

}  // namespace coalesce
