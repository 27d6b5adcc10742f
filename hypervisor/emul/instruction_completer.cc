#include "hypervisor/emul/instruction_completer.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/emul/instruction_decoder.h"
#include "hypervisor/emul/instruction_executor.h"
#include "hypervisor/emul/integer_semantics.h"
#include "hypervisor/emul/kvm_guest_cpu.h"
#include "hypervisor/emul/native_stub.h"

namespace coalesce {
namespace {

std::string Hex(const std::vector<uint8_t>& bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size(); ++i) absl::StrAppendFormat(&out, "%s%02x", i ? " " : "", bytes[i]);
  return out.empty() ? "(none)" : out;
}

// Fetches up to `limit` bytes at CS:RIP, stopping at the first page the guest cannot read.
absl::StatusOr<std::vector<uint8_t>> FetchAtRip(KvmGuestCpu& cpu, const RegisterState& regs,
                                                size_t limit = kMaxInstructionLength) {
  const uint64_t start = regs.segment_base[static_cast<size_t>(SegmentReg::kCs)] + regs.rip;
  std::vector<uint8_t> bytes;
  const MemoryAccess fetch{.write = false, .user = regs.cpl == 3};
  while (bytes.size() < limit) {
    const uint64_t at = start + bytes.size();
    const size_t chunk = std::min<size_t>(limit - bytes.size(), 4096 - (at & 4095));
    std::vector<uint8_t> part(chunk);
    ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Read(at, part, fetch));
    if (f) break;
    bytes.insert(bytes.end(), part.begin(), part.end());
  }
  return bytes;
}

// Whether `insn` may be completed right after a SIMD instruction without going back to KVM.
bool Continuable(const Instruction& insn) {
  if (insn.mnemonic == Mnemonic::kSimd) return true;
  const std::optional<IntegerForm> integer = ClassifyInteger(insn);
  return integer.has_value() && (!insn.has_memory_operand() || integer->lea);
}

// Completes the SIMD/integer instructions that follow, fetching code a window at a time. Anything else,
// an exception, or an instruction that cannot be completed ends the run: KVM takes over from that RIP
// (an instruction that failed here fails again there and comes back as a first instruction, with its
// diagnostic).
absl::Status ContinueRun(KvmGuestCpu& cpu, CompletedInstructions& done) {
  std::vector<uint8_t> window;
  uint64_t window_rip = 0;
  while (done.continued < kMaxContinued) {
    ASSIGN_OR_RETURN(RegisterState regs, cpu.GetRegisters());
    const uint64_t offset = regs.rip - window_rip;
    if (window.empty() || regs.rip < window_rip || offset + kMaxInstructionLength > window.size()) {
      ASSIGN_OR_RETURN(window, FetchAtRip(cpu, regs, 256));
      window_rip = regs.rip;
    }
    const size_t at = regs.rip - window_rip;
    if (at >= window.size()) break;
    auto insn = DecodeInstruction64(std::span<const uint8_t>(window).subspan(at));
    if (!insn.ok() || !Continuable(*insn)) break;
    auto result = ExecuteInstruction(cpu, *insn);
    if (!result.ok()) break;
    ++done.continued;
    if (result->injected) break;
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<uint8_t> InstructionBytesFromExit(const exit::InternalError& error) {
  if (error.suberror != KVM_INTERNAL_ERROR_EMULATION || error.ndata < 3) return {};
  if (!(error.data[0] & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) return {};
  // data[1..2] overlay struct { u8 insn_size; u8 insn_bytes[15]; } (see struct emulation_failure).
  uint8_t raw[16];
  std::memcpy(raw, &error.data[1], 16);
  const size_t size = std::min<size_t>(raw[0], kMaxInstructionLength);
  return std::vector<uint8_t>(raw + 1, raw + 1 + size);
}

absl::StatusOr<CompletedInstructions> CompleteFailedInstruction(VcpuFd& vcpu, const GuestMemory& memory,
                                                                const exit::InternalError& error) {
  if (error.suberror != KVM_INTERNAL_ERROR_EMULATION) {
    return absl::FailedPreconditionError(
        absl::StrFormat("KVM internal error suberror %u is not an emulation failure", error.suberror));
  }
  KvmGuestCpu cpu(vcpu, memory);
  RETURN_IF_ERROR(cpu.Load());
  ASSIGN_OR_RETURN(RegisterState regs, cpu.GetRegisters());

  std::vector<uint8_t> bytes = InstructionBytesFromExit(error);
  auto insn = DecodeInstruction64(bytes);
  if (!insn.ok()) {
    // No bytes in the exit, or fewer than the instruction needs: read them from guest memory at RIP.
    ASSIGN_OR_RETURN(bytes, FetchAtRip(cpu, regs));
    insn = DecodeInstruction64(bytes);
  }
  auto diagnostic = [&](const std::string& what) {
    return absl::StrFormat("cannot complete the instruction KVM failed to emulate at RIP %#x (bytes %s): %s",
                           regs.rip, Hex(bytes), what);
  };
  if (!insn.ok()) return absl::UnimplementedError(diagnostic(std::string(insn.status().message())));

  NativeBatch batch;  // one signal-mask change for the whole run of instructions below
  auto result = ExecuteInstruction(cpu, *insn);
  if (!result.ok()) {
    return absl::Status(result.status().code(),
                        diagnostic(absl::StrFormat("%s [%s]", result.status().message(), insn->OpcodeText())));
  }
  CompletedInstructions done{result->mnemonic, 0};
  if (result->injected) {
    LOG_DEBUG("emul: %s at %#x raised vector %d", result->mnemonic, regs.rip, result->injected->vector);
  } else if (insn->mnemonic == Mnemonic::kSimd) {
    RETURN_IF_ERROR(ContinueRun(cpu, done));
  }
  RETURN_IF_ERROR(cpu.Commit());
  return done;
}

}  // namespace coalesce
