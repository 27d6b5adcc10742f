#include "hypervisor/emul/native_stub.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"

namespace coalesce {
namespace {

constexpr size_t kPage = 4096;

// Data page layout (the page right after the code page, so the code reaches it RIP-relative).
constexpr size_t kGprOffset = 0;       // 16 x u64
constexpr size_t kFlagsOffset = 128;   // u64
constexpr size_t kHostRspOffset = 136;  // u64
constexpr size_t kBufferOffset = 256;  // NativeContext::memory

// Two pages per thread: code (RW while written, RX while run) and data (RW).
class StubPages {
 public:
  StubPages() {
    void* p = mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  ~StubPages() {
    if (base_ != nullptr) munmap(base_, 2 * kPage);
  }
  StubPages(const StubPages&) = delete;
  StubPages& operator=(const StubPages&) = delete;

  uint8_t* code() const { return base_; }
  uint8_t* data() const { return base_ + kPage; }
  bool ok() const { return base_ != nullptr; }

 private:
  uint8_t* base_ = nullptr;
};

class CodeWriter {
 public:
  void Bytes(std::initializer_list<uint8_t> b) { bytes_.insert(bytes_.end(), b); }
  void Bytes(std::span<const uint8_t> b) { bytes_.insert(bytes_.end(), b.begin(), b.end()); }
  // Appends a disp32 that addresses data-page offset `data_offset` from the end of an instruction whose
  // remaining bytes after the displacement number `tail`.
  void RipDisp(size_t data_offset, size_t tail = 0) {
    const int64_t target = static_cast<int64_t>(kPage + data_offset);
    const int64_t next = static_cast<int64_t>(bytes_.size() + 4 + tail);
    const int32_t d = static_cast<int32_t>(target - next);
    for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<uint8_t>(static_cast<uint32_t>(d) >> (8 * i)));
  }
  // mov r64, [rip+data] (load) or mov [rip+data], r64 (store).
  void MovGpr(int reg, size_t data_offset, bool store) {
    Bytes({static_cast<uint8_t>(0x48 | (reg >= 8 ? 4 : 0)), static_cast<uint8_t>(store ? 0x89 : 0x8b),
           static_cast<uint8_t>(((reg & 7) << 3) | 5)});
    RipDisp(data_offset);
  }
  size_t size() const { return bytes_.size(); }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace

absl::Status ExecuteNatively(std::span<const uint8_t> insn, std::optional<size_t> rip_disp_offset,
                             NativeContext& ctx) {
  if (insn.empty() || insn.size() > 15) return absl::InvalidArgumentError("bad native instruction length");
  if (rip_disp_offset && *rip_disp_offset + 4 > insn.size()) {
    return absl::InvalidArgumentError("displacement outside the instruction");
  }
  thread_local StubPages pages;
  if (!pages.ok()) return absl::ResourceExhaustedError("cannot map the native-execution stub");

  CodeWriter w;
  // Callee-saved registers of the host ABI: the guest values overwrite them.
  w.Bytes({0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57});
  w.Bytes({0x48, 0x89, 0x25});  // mov [rip+host_rsp], rsp
  w.RipDisp(kHostRspOffset);
  w.Bytes({0xff, 0x35});  // push qword [rip+flags]
  w.RipDisp(kFlagsOffset);
  w.Bytes({0x9d});  // popfq
  for (int r = 0; r < 16; ++r) w.MovGpr(r, kGprOffset + 8 * r, /*store=*/false);  // RSP last use of the stack
  const size_t insn_at = w.size();
  w.Bytes(insn);
  if (rip_disp_offset) {
    auto& b = w.bytes();
    const int64_t next = static_cast<int64_t>(insn_at + insn.size());
    const int32_t d = static_cast<int32_t>(static_cast<int64_t>(kPage + kBufferOffset) - next);
    for (int i = 0; i < 4; ++i) {
      b[insn_at + *rip_disp_offset + i] = static_cast<uint8_t>(static_cast<uint32_t>(d) >> (8 * i));
    }
  }
  for (int r = 0; r < 16; ++r) w.MovGpr(r, kGprOffset + 8 * r, /*store=*/true);
  w.Bytes({0x48, 0x8b, 0x25});  // mov rsp, [rip+host_rsp]
  w.RipDisp(kHostRspOffset);
  w.Bytes({0x9c, 0x8f, 0x05});  // pushfq; pop qword [rip+flags]
  w.RipDisp(kFlagsOffset);
  w.Bytes({0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3});

  if (mprotect(pages.code(), kPage, PROT_READ | PROT_WRITE) != 0) {
    return absl::InternalError(absl::StrFormat("mprotect RW: %s", strerror(errno)));
  }
  std::memcpy(pages.code(), w.bytes().data(), w.size());
  if (mprotect(pages.code(), kPage, PROT_READ | PROT_EXEC) != 0) {
    return absl::InternalError(absl::StrFormat("mprotect RX: %s", strerror(errno)));
  }
  uint8_t* data = pages.data();
  std::memcpy(data + kGprOffset, ctx.gpr.data(), 128);
  // Only the arithmetic flags come from the guest: TF, DF, AC, ... stay as the host ABI expects.
  const uint64_t flags_in = (ctx.rflags & kArithmeticFlags) | 0x2;
  std::memcpy(data + kFlagsOffset, &flags_in, 8);
  std::memcpy(data + kBufferOffset, ctx.memory.data(), ctx.memory.size());

  // While guest values are in RSP a signal frame could not be pushed: block everything for the run.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  void (*fn)();
  const void* entry = pages.code();
  std::memcpy(&fn, &entry, sizeof(fn));
  fn();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);

  std::memcpy(ctx.gpr.data(), data + kGprOffset, 128);
  uint64_t flags_out;
  std::memcpy(&flags_out, data + kFlagsOffset, 8);
  ctx.rflags = (ctx.rflags & ~kArithmeticFlags) | (flags_out & kArithmeticFlags);
  std::memcpy(ctx.memory.data(), data + kBufferOffset, ctx.memory.size());
  return absl::OkStatus();
}

}  // namespace coalesce
