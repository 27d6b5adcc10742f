// Runs one copied guest integer instruction natively on the host, on a copy of the guest's general registers
// and arithmetic flags. Used for the long tail of plain integer instructions (ALU, shifts, bit scans, moves
// between registers) that PVM's in-kernel emulator gives up on: the host CPU is the reference for their
// semantics, flags included. The caller (integer_semantics.cc) decides which instructions are safe to run:
// nothing here may touch host memory other than the stub's own buffer, jump, trap or change privileged state.
#pragma once

#include <signal.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "absl/status/status.h"

namespace coalesce {

// The six arithmetic flags (CF PF AF ZF SF OF): the only RFLAGS bits a native run reads or writes.
inline constexpr uint64_t kArithmeticFlags = 0x8d5;

// The XSAVE components a native run may load and store: x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256,
// Hi16_ZMM). Never PKRU (it would change this process's own memory permissions) nor AMX.
inline constexpr uint64_t kNativeXstateMask = 0xe7;
inline constexpr size_t kNativeXsaveAreaSize = 4096;

struct NativeContext {
  std::array<uint64_t, 16> gpr{};  // ModRM numbering, RSP included
  uint64_t rflags = 0x2;            // only kArithmeticFlags are taken in and given back
  // The memory operand, when the instruction has one: it is rewritten to address this buffer RIP-relative.
  std::array<uint8_t, 64> memory{};
  // Vector state (SIMD instructions): a standard-format XSAVE image loaded with XRSTOR before the
  // instruction and saved with XSAVE after it, for the components in xstate_mask (& kNativeXstateMask).
  // Empty: the host's vector registers are left alone (integer instructions).
  std::span<uint8_t> xsave_image;
  uint64_t xstate_mask = 0;
  // Set when the instruction raised a CPU exception on the host (SIGILL, SIGSEGV, SIGBUS, SIGFPE); the
  // run was abandoned and nothing in this context changed. The caller turns it into the guest's exception.
  int fault_signal = 0;
};

// Sets up native execution once for several ExecuteNatively calls on this thread (exception handlers,
// alternate signal stack, asynchronous signals blocked until destruction). Optional: a call outside any
// batch does the same for itself, at the price of a few system calls.
class NativeBatch {
 public:
  NativeBatch();
  ~NativeBatch();
  NativeBatch(const NativeBatch&) = delete;
  NativeBatch& operator=(const NativeBatch&) = delete;
  // Whether this thread has its alternate signal stack (without it a fault in the stub cannot be caught).
  static bool Ready();

 private:
  bool outermost_ = false;
  sigset_t saved_mask_{};
};

// Executes `insn` (at most 15 bytes, one complete instruction) with the registers and flags of `ctx`. When
// `rip_disp_offset` is set, bytes [offset, offset+4) of `insn` are a RIP-relative disp32 that is patched to
// address ctx.memory. Thread-safe: each thread has its own code and data pages. Asynchronous signals are
// blocked while guest register values (RSP included) are live; a CPU exception inside the copied instruction
// is caught (on an alternate signal stack) and reported in ctx.fault_signal instead of killing the process.
absl::Status ExecuteNatively(std::span<const uint8_t> insn, std::optional<size_t> rip_disp_offset,
                             NativeContext& ctx);

}  // namespace coalesce
