#include "hypervisor/emul/integer_semantics.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/emul/memory_operand.h"
#include "hypervisor/emul/native_stub.h"

namespace coalesce {
namespace {

__extension__ typedef __int128 Int128;

using Access = IntegerForm::Access;

constexpr const char* kAluNames[8] = {"add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"};
constexpr const char* kShiftNames[8] = {"rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"};
constexpr const char* kGroup3Names[8] = {"test", "test", "not", "neg", "mul", "imul", "div", "idiv"};

uint8_t OperandSize(const Instruction& in) { return in.rex_w() ? 8 : (in.operand_size_override ? 2 : 4); }

IntegerForm Form(Access access, uint8_t size, bool lockable, std::string name) {
  IntegerForm f;
  f.access = access;
  f.size = size;
  f.lockable = lockable;
  f.name = std::move(name);
  return f;
}

std::optional<IntegerForm> ClassifyPrimary(const Instruction& in) {
  const uint8_t op = in.opcode;
  const uint8_t osz = OperandSize(in);
  const uint8_t reg = in.reg_field();
  if (op < 0x40 && (op & 7) < 4) {
    const uint8_t size = (op & 1) ? osz : 1;
    const bool is_cmp = (op >> 3) == 7;
    if ((op & 7) < 2) return Form(is_cmp ? Access::kRead : Access::kReadWrite, size, !is_cmp, kAluNames[op >> 3]);
    return Form(Access::kRead, size, false, kAluNames[op >> 3]);
  }
  if (op < 0x40 && ((op & 7) == 4 || (op & 7) == 5)) return Form(Access::kNone, 0, false, kAluNames[op >> 3]);  // al/eax, imm
  if (op == 0xa8 || op == 0xa9) return Form(Access::kNone, 0, false, "test");
  switch (op) {
    case 0x63: return Form(Access::kRead, osz == 2 ? 2 : 4, false, "movsxd");
    case 0x69: case 0x6b: return Form(Access::kRead, osz, false, "imul");
    case 0x80: case 0x81: case 0x83:
      return Form(reg == 7 ? Access::kRead : Access::kReadWrite, op == 0x80 ? 1 : osz, reg != 7, kAluNames[reg]);
    case 0x84: case 0x85: return Form(Access::kRead, op == 0x84 ? 1 : osz, false, "test");
    case 0x86: case 0x87: return Form(Access::kReadWrite, op == 0x86 ? 1 : osz, true, "xchg");
    case 0x88: case 0x89: return Form(Access::kWrite, op == 0x88 ? 1 : osz, false, "mov");
    case 0x8a: case 0x8b: return Form(Access::kRead, op == 0x8a ? 1 : osz, false, "mov");
    case 0x8d: {
      if (!in.has_memory_operand()) return std::nullopt;  // lea with a register operand is #UD
      IntegerForm f = Form(Access::kNone, 0, false, "lea");
      f.lea = true;
      return f;
    }
    case 0x98: return Form(Access::kNone, 0, false, "cbw");
    case 0x99: return Form(Access::kNone, 0, false, "cwd");
    case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd2: case 0xd3:
      if (reg == 6) return std::nullopt;
      return Form(Access::kReadWrite, (op & 1) ? osz : 1, false, kShiftNames[reg]);
    case 0xc6: case 0xc7:
      if (reg != 0) return std::nullopt;
      return Form(Access::kWrite, op == 0xc6 ? 1 : osz, false, "mov");
    case 0xf6: case 0xf7: {
      if (reg == 1) return std::nullopt;
      const uint8_t size = op == 0xf6 ? 1 : osz;
      IntegerForm f = Form(reg == 2 || reg == 3 ? Access::kReadWrite : Access::kRead, size, reg == 2 || reg == 3,
                           kGroup3Names[reg]);
      f.divide = reg >= 6;
      return f;
    }
    case 0xfe: case 0xff:
      if (reg > 1) return std::nullopt;  // call/jmp/push forms
      return Form(Access::kReadWrite, op == 0xfe ? 1 : osz, true, reg == 0 ? "inc" : "dec");
    default: break;
  }
  if (op >= 0x90 && op <= 0x97) return Form(Access::kNone, 0, false, op == 0x90 ? "nop" : "xchg");
  if (op >= 0xb0 && op <= 0xbf) return Form(Access::kNone, 0, false, "mov");
  return std::nullopt;
}

std::optional<IntegerForm> Classify0F(const Instruction& in) {
  const uint8_t op = in.opcode;
  const uint8_t osz = OperandSize(in);
  const uint8_t reg = in.reg_field();
  // F3 selects popcnt/tzcnt/lzcnt; any other F2/F3 use in this map is a different (SSE) instruction.
  if (in.repne) return std::nullopt;
  if (in.rep) {
    if (op == 0xb8) return Form(Access::kRead, osz, false, "popcnt");
    if (op == 0xbc) return Form(Access::kRead, osz, false, "tzcnt");
    if (op == 0xbd) return Form(Access::kRead, osz, false, "lzcnt");
    return std::nullopt;
  }
  if (op >= 0x40 && op <= 0x4f) return Form(Access::kRead, osz, false, "cmov");
  if (op >= 0x90 && op <= 0x9f) return Form(Access::kWrite, 1, false, "setcc");
  if (op >= 0xc8 && op <= 0xcf) return Form(Access::kNone, 0, false, "bswap");
  switch (op) {
    case 0x1f: return Form(Access::kNone, 0, false, "nop");
    case 0x18:  // prefetchnta/t0/t1/t2: hints, no access (the stub prefetches its own buffer)
      if (in.has_memory_operand() && reg < 4) return Form(Access::kNone, 0, false, "prefetch");
      return std::nullopt;
    case 0x0d:  // prefetch/prefetchw
      if (in.has_memory_operand() && reg < 2) return Form(Access::kNone, 0, false, "prefetchw");
      return std::nullopt;
    case 0xc7:  // rdrand/rdseed r (the host's generator; CF says whether it delivered)
      if (!in.has_memory_operand() && (reg == 6 || reg == 7)) {
        return Form(Access::kNone, 0, false, reg == 6 ? "rdrand" : "rdseed");
      }
      return std::nullopt;
    case 0xa3: case 0xab: case 0xb3: case 0xbb: {
      // With a memory operand the register bit offset reaches outside the operand: not handled.
      static constexpr const char* kNames[4] = {"bt", "bts", "btr", "btc"};
      const int which = op == 0xa3 ? 0 : op == 0xab ? 1 : op == 0xb3 ? 2 : 3;
      IntegerForm f = Form(op == 0xa3 ? Access::kRead : Access::kReadWrite, osz, op != 0xa3, kNames[which]);
      f.register_only = true;
      return f;
    }
    case 0xba: {
      if (reg < 4) return std::nullopt;
      static constexpr const char* kNames[4] = {"bt", "bts", "btr", "btc"};
      return Form(reg == 4 ? Access::kRead : Access::kReadWrite, osz, reg != 4, kNames[reg - 4]);
    }
    case 0xa4: case 0xa5: return Form(Access::kReadWrite, osz, false, "shld");
    case 0xac: case 0xad: return Form(Access::kReadWrite, osz, false, "shrd");
    case 0xaf: return Form(Access::kRead, osz, false, "imul");
    case 0xb0: case 0xb1: return Form(Access::kReadWrite, op == 0xb0 ? 1 : osz, true, "cmpxchg");
    case 0xc0: case 0xc1: return Form(Access::kReadWrite, op == 0xc0 ? 1 : osz, true, "xadd");
    case 0xb6: return Form(Access::kRead, 1, false, "movzx");
    case 0xb7: return Form(Access::kRead, 2, false, "movzx");
    case 0xbe: return Form(Access::kRead, 1, false, "movsx");
    case 0xbf: return Form(Access::kRead, 2, false, "movsx");
    case 0xbc: return Form(Access::kRead, osz, false, "bsf");
    case 0xbd: return Form(Access::kRead, osz, false, "bsr");
    default: return std::nullopt;
  }
}

// The byte offset of the ModRM byte in the instruction.
// The value of the r/m operand of `size` bytes: the staged memory, or the register (AH..BH without REX).
uint64_t RmValue(const Instruction& in, const NativeContext& ctx, uint8_t size) {
  uint64_t v = 0;
  if (in.has_memory_operand()) {
    std::memcpy(&v, ctx.memory.data(), size);
  } else {
    const int rm = in.rm_field() | ((in.rex & 1) ? 8 : 0);
    if (size == 1 && in.rex == 0 && rm >= 4) return (ctx.gpr[rm - 4] >> 8) & 0xff;
    v = ctx.gpr[rm];
  }
  return size == 8 ? v : v & ((1ull << (8 * size)) - 1);
}

// Whether div/idiv of `size` with this divisor raises #DE (divisor 0, or a quotient that does not fit).
bool DivideFaults(const NativeContext& ctx, uint8_t size, uint64_t divisor, bool is_signed) {
  if (divisor == 0) return true;
  const unsigned bits = 8u * size;
  const uint64_t mask = size == 8 ? ~0ull : (1ull << bits) - 1;
  const uint64_t lo = size == 1 ? ctx.gpr[0] & 0xff : ctx.gpr[0] & mask;
  const uint64_t hi = size == 1 ? (ctx.gpr[0] >> 8) & 0xff : ctx.gpr[2] & mask;
  if (!is_signed) return hi >= divisor;  // the quotient fits iff the high half is below the divisor
  auto sign_extend = [&](uint64_t v) -> Int128 {
    return size == 8 ? static_cast<Int128>(static_cast<int64_t>(v))
                     : static_cast<Int128>(static_cast<int64_t>(v << (64 - bits)) >> (64 - bits));
  };
  const Int128 dividend = sign_extend(hi) * (static_cast<Int128>(1) << bits) + static_cast<Int128>(lo);
  const Int128 d = sign_extend(divisor);
  const Int128 max = (static_cast<Int128>(1) << (bits - 1)) - 1;
  const Int128 min = -max - 1;
  if (d == -1) {
    if (size == 8 && hi == (1ull << 63) && lo == 0) return true;  // -2^127 / -1 overflows even Int128
    return -dividend > max || -dividend < min;
  }
  const Int128 q = dividend / d;
  return q > max || q < min;
}

// lea: the effective address (no segment base), truncated to the address and operand sizes.
void ExecuteLea(const Instruction& in, RegisterState& regs) {
  const MemoryOperand& m = in.memory;
  uint64_t ea = static_cast<uint64_t>(m.displacement);
  if (m.rip_relative) ea += regs.rip + in.length;
  if (m.base != kNoRegister) ea += regs.gpr[m.base];
  if (m.index != kNoRegister) ea += regs.gpr[m.index] * m.scale;
  if (in.address_size_override) ea &= 0xffffffffull;
  const int dst = in.reg_field() | ((in.rex & 4) ? 8 : 0);
  switch (OperandSize(in)) {
    case 8: regs.gpr[dst] = ea; break;
    case 4: regs.gpr[dst] = ea & 0xffffffffull; break;
    default: regs.gpr[dst] = (regs.gpr[dst] & ~0xffffull) | (ea & 0xffff); break;
  }
}

struct Prepared {
  std::vector<uint8_t> code;
  std::optional<size_t> disp_at;
};

absl::StatusOr<Completion> RunOnce(const Prepared& p, NativeContext& ctx, const IntegerForm& form,
                                   const Instruction& in) {
  if (form.divide && DivideFaults(ctx, form.size, RmValue(in, ctx, form.size), in.reg_field() == 7)) {
    return Completion::Faulted(Fault::DivideError());
  }
  RETURN_IF_ERROR(ExecuteNatively(p.code, p.disp_at, ctx));
  if (ctx.fault_signal != 0) {
    // Every fault these instructions can raise is checked before they run; one here is our bug.
    return absl::InternalError(absl::StrFormat("%s raised signal %d when run on the host", form.name, ctx.fault_signal));
  }
  return Completion::Retired();
}

// A LOCKed (or implicitly locked xchg) read-modify-write: computed on a copy of the aligned 8- or 16-byte
// window around the operand and committed with one compare-exchange, retried when memory changed meanwhile.
absl::StatusOr<Completion> ExecuteAtomic(GuestCpu& cpu, const Instruction& in, const IntegerForm& form,
                                         const Prepared& p, uint64_t linear, MemoryAccess access,
                                         NativeContext& ctx) {
  size_t window = 0;
  if ((linear & 7) + form.size <= 8) {
    window = 8;
  } else if ((linear & 15) + form.size <= 16) {
    window = 16;
  }
  if (window == 0) {
    return absl::UnimplementedError(absl::StrFormat("locked %s across a 16-byte boundary", form.name));
  }
  const uint64_t base = linear & ~static_cast<uint64_t>(window - 1);
  const size_t off = linear - base;
  const NativeContext start = ctx;
  for (int attempt = 0; attempt < 100000; ++attempt) {
    uint8_t old[16], desired[16], seen[16];
    ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Read(base, std::span<uint8_t>(old, window), access));
    if (f) return Completion::Faulted(*f);
    ctx = start;
    std::memcpy(ctx.memory.data(), old + off, form.size);
    ASSIGN_OR_RETURN(Completion c, RunOnce(p, ctx, form, in));
    if (c.kind != Completion::Kind::kRetired) return c;
    std::memcpy(desired, old, window);
    std::memcpy(desired + off, ctx.memory.data(), form.size);
    ASSIGN_OR_RETURN(f, cpu.CompareExchange(base, std::span<const uint8_t>(old, window),
                                            std::span<const uint8_t>(desired, window),
                                            std::span<uint8_t>(seen, window), access));
    if (f) return Completion::Faulted(*f);
    if (std::memcmp(seen, old, window) == 0) return Completion::Retired();
  }
  return absl::DeadlineExceededError(absl::StrFormat("locked %s kept losing its compare-exchange", form.name));
}

}  // namespace

std::optional<IntegerForm> ClassifyInteger(const Instruction& in) {
  if (in.mnemonic != Mnemonic::kUnknown || in.length == 0 || in.encoding != Encoding::kLegacy) return std::nullopt;
  std::optional<IntegerForm> form;
  if (in.map == OpcodeMap::kPrimary) {
    form = ClassifyPrimary(in);
  } else if (in.map == OpcodeMap::k0F) {
    form = Classify0F(in);
  }
  if (!form) return std::nullopt;
  if (in.has_memory_operand() && form->register_only) return std::nullopt;
  return form;
}

absl::StatusOr<Completion> ExecuteInteger(GuestCpu& cpu, const Instruction& in, const IntegerForm& form,
                                          RegisterState& regs) {
  const bool mem = in.has_memory_operand();
  // xchg with memory is locked whether or not it says so.
  const bool implicit_lock = mem && in.map == OpcodeMap::kPrimary && (in.opcode == 0x86 || in.opcode == 0x87);
  if (in.lock && (!mem || !form.lockable)) return Completion::Faulted(Fault::InvalidOpcode());
  if (form.lea) {
    ExecuteLea(in, regs);
    return Completion::Retired();
  }

  Prepared p;
  if (mem) {
    p.disp_at = RewriteMemoryOperandRipRelative(in, p.code);
  } else {
    p.code.assign(in.bytes.begin(), in.bytes.begin() + in.length);
  }
  NativeContext ctx;
  ctx.gpr = regs.gpr;
  ctx.rflags = regs.rflags;

  auto finish = [&](const Completion& c) {
    if (c.kind == Completion::Kind::kRetired) {
      regs.gpr = ctx.gpr;
      regs.rflags = (regs.rflags & ~kArithmeticFlags) | (ctx.rflags & kArithmeticFlags);
    }
    return c;
  };

  if (!mem || form.access == Access::kNone) {
    ASSIGN_OR_RETURN(Completion c, RunOnce(p, ctx, form, in));
    return finish(c);
  }

  const LinearAddress la = ComputeLinearAddress(regs, in, form.size);
  if (la.fault) return Completion::Faulted(*la.fault);
  const bool reads = form.access == Access::kRead || form.access == Access::kReadWrite;
  const bool writes = form.access == Access::kWrite || form.access == Access::kReadWrite;
  const MemoryAccess access{.write = writes, .user = regs.cpl == 3};

  if (writes && (in.lock || implicit_lock)) {
    ASSIGN_OR_RETURN(Completion c, ExecuteAtomic(cpu, in, form, p, la.address, access, ctx));
    return finish(c);
  }
  if (writes) {
    ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Probe(la.address, form.size, access));
    if (f) return Completion::Faulted(*f);
  }
  if (reads) {
    ASSIGN_OR_RETURN(std::optional<Fault> f,
                     cpu.Read(la.address, std::span<uint8_t>(ctx.memory.data(), form.size), access));
    if (f) return Completion::Faulted(*f);
  }
  ASSIGN_OR_RETURN(Completion c, RunOnce(p, ctx, form, in));
  if (c.kind != Completion::Kind::kRetired) return c;
  if (writes) {
    ASSIGN_OR_RETURN(std::optional<Fault> f,
                     cpu.Write(la.address, std::span<const uint8_t>(ctx.memory.data(), form.size), access));
    if (f) return Completion::Faulted(*f);
  }
  return finish(c);
}

}  // namespace coalesce
