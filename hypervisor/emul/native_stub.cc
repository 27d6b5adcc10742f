#include "hypervisor/emul/native_stub.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>
#include <ucontext.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

namespace coalesce {
namespace {

constexpr size_t kPage = 4096;

// Data page layout (the page right after the code page, so the code reaches it RIP-relative).
constexpr size_t kGprOffset = 0;       // 16 x u64
constexpr size_t kFlagsOffset = 128;   // u64
constexpr size_t kHostRspOffset = 136;  // u64
constexpr size_t kXstateMaskOffset = 144;  // u64: RFBM for the guest image
constexpr size_t kBufferOffset = 256;  // NativeContext::memory
// The XSAVE areas follow the data page (64-byte aligned, as XSAVE requires; page-aligned here).
constexpr size_t kGuestXsaveOffset = kPage;       // from the data page
constexpr size_t kHostXsaveOffset = 2 * kPage;    // the host's own vector state during the run
constexpr size_t kStubPageCount = 4;              // code, data, guest XSAVE area, host XSAVE area

// Per thread, four pages of one memfd: code (mapped RX where it runs, and RW at a separate alias where it
// is written: never writable and executable at one address, and no mprotect per instruction), then data
// and the two XSAVE areas (RW), contiguous with the code so the stub reaches them RIP-relative.
class StubPages {
 public:
  StubPages() {
    const int fd = memfd_create("coalesce-native-stub", MFD_CLOEXEC);
    if (fd < 0) return;
    if (ftruncate(fd, kStubPageCount * kPage) == 0) {
      void* region = mmap(nullptr, kStubPageCount * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (region != MAP_FAILED) {
        base_ = static_cast<uint8_t*>(region);
        void* code = mmap(base_, kPage, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED, fd, 0);
        void* data = mmap(base_ + kPage, (kStubPageCount - 1) * kPage, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_FIXED, fd, kPage);
        void* alias = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ok_ = code != MAP_FAILED && data != MAP_FAILED && alias != MAP_FAILED;
        if (alias != MAP_FAILED) code_alias_ = static_cast<uint8_t*>(alias);
      }
    }
    close(fd);
  }
  ~StubPages() {
    if (base_ != nullptr) munmap(base_, kStubPageCount * kPage);
    if (code_alias_ != nullptr) munmap(code_alias_, kPage);
  }
  StubPages(const StubPages&) = delete;
  StubPages& operator=(const StubPages&) = delete;

  uint8_t* code() const { return base_; }              // where the stub runs (RX)
  uint8_t* code_writable() const { return code_alias_; }  // the same page, for writing the stub
  uint8_t* data() const { return base_ + kPage; }
  bool ok() const { return ok_; }

 private:
  uint8_t* base_ = nullptr;
  uint8_t* code_alias_ = nullptr;
  bool ok_ = false;
};

// Inside a NativeBatch the handlers, the alternate stack and the signal mask are already in place.
thread_local int t_batch_depth = 0;

// --- Catching a CPU exception raised by the copied instruction. ---
// The handler runs on a per-thread alternate stack (the faulting RSP may be the guest's) and jumps back
// into ExecuteNatively only when the faulting PC is inside this thread's stub code page; any other fault
// gets the previous disposition back and re-faults into it.
constexpr int kCaughtSignals[] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE};
thread_local sigjmp_buf* t_recover = nullptr;
thread_local uintptr_t t_code_begin = 0;
thread_local uintptr_t t_code_end = 0;
struct sigaction g_previous[NSIG];

void OnCpuException(int sig, siginfo_t* /*info*/, void* context) {
  const auto* uc = static_cast<const ucontext_t*>(context);
  const auto pc = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  if (t_recover != nullptr && pc >= t_code_begin && pc < t_code_end) siglongjmp(*t_recover, sig);
  sigaction(sig, &g_previous[sig], nullptr);  // not ours: returning re-executes the fault under it
}

// (Re)installs the handlers when someone else's are in place (a test framework's crash reporter, say):
// theirs become the fallback for faults outside the stub.
void InstallCpuExceptionHandlers() {
  static absl::Mutex mu;
  absl::MutexLock lock(&mu);
  for (int sig : kCaughtSignals) {
    struct sigaction current {};
    sigaction(sig, nullptr, &current);
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == OnCpuException) continue;
    struct sigaction sa {};
    sa.sa_sigaction = OnCpuException;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(sig, &sa, &g_previous[sig]);
  }
}

// An alternate signal stack for this thread, kept for the thread's lifetime.
bool EnsureAltStack() {
  struct AltStack {
    std::vector<uint8_t> memory = std::vector<uint8_t>(64 * 1024);
    bool ok = false;
    AltStack() {
      stack_t ss{};
      ss.ss_sp = memory.data();
      ss.ss_size = memory.size();
      ok = sigaltstack(&ss, nullptr) == 0;
    }
  };
  thread_local AltStack stack;
  return stack.ok;
}

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

NativeBatch::NativeBatch() {
  if (t_batch_depth++ > 0) return;
  InstallCpuExceptionHandlers();
  (void)EnsureAltStack();  // Ready() reports the outcome
  // While guest values are in RSP a signal frame could not be pushed: block every asynchronous signal. CPU
  // exceptions stay deliverable (to the alternate stack): blocked, they would kill the process.
  sigset_t blocked;
  sigfillset(&blocked);
  for (int sig : kCaughtSignals) sigdelset(&blocked, sig);
  pthread_sigmask(SIG_SETMASK, &blocked, &saved_mask_);
  outermost_ = true;
}

NativeBatch::~NativeBatch() {
  --t_batch_depth;
  if (outermost_) pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
}

bool NativeBatch::Ready() { return EnsureAltStack(); }

absl::Status ExecuteNatively(std::span<const uint8_t> insn, std::optional<size_t> rip_disp_offset,
                             NativeContext& ctx) {
  if (insn.empty() || insn.size() > 15) return absl::InvalidArgumentError("bad native instruction length");
  if (rip_disp_offset && *rip_disp_offset + 4 > insn.size()) {
    return absl::InvalidArgumentError("displacement outside the instruction");
  }
  thread_local StubPages pages;
  if (!pages.ok()) return absl::ResourceExhaustedError("cannot map the native-execution stub");
  if (!ctx.xsave_image.empty() && ctx.xsave_image.size() > kNativeXsaveAreaSize) {
    return absl::InvalidArgumentError("XSAVE image larger than the stub's area");
  }
  std::optional<NativeBatch> own_batch;
  if (t_batch_depth == 0) own_batch.emplace();
  if (!NativeBatch::Ready()) return absl::InternalError("sigaltstack failed for the native-execution stub");

  CodeWriter w;
  // Callee-saved registers of the host ABI: the guest values overwrite them.
  w.Bytes({0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57});
  w.Bytes({0x48, 0x89, 0x25});  // mov [rip+host_rsp], rsp
  w.RipDisp(kHostRspOffset);
  const bool vector_state = !ctx.xsave_image.empty();
  if (vector_state) {
    w.Bytes({0xb8, static_cast<uint8_t>(kNativeXstateMask), 0, 0, 0, 0x31, 0xd2});  // mov eax, mask; xor edx, edx
    w.Bytes({0x48, 0x0f, 0xae, 0x25});  // xsave64 [rip+host area]
    w.RipDisp(kHostXsaveOffset);
    w.Bytes({0x8b, 0x05});  // mov eax, [rip+mask]
    w.RipDisp(kXstateMaskOffset);
    w.Bytes({0x31, 0xd2, 0x48, 0x0f, 0xae, 0x2d});  // xor edx, edx; xrstor64 [rip+guest area]
    w.RipDisp(kGuestXsaveOffset);
  }
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
  if (vector_state) {
    w.Bytes({0x8b, 0x05});  // mov eax, [rip+mask]
    w.RipDisp(kXstateMaskOffset);
    w.Bytes({0x31, 0xd2, 0x48, 0x0f, 0xae, 0x25});  // xor edx, edx; xsave64 [rip+guest area]
    w.RipDisp(kGuestXsaveOffset);
    w.Bytes({0xb8, static_cast<uint8_t>(kNativeXstateMask), 0, 0, 0, 0x31, 0xd2});
    w.Bytes({0x48, 0x0f, 0xae, 0x2d});  // xrstor64 [rip+host area]
    w.RipDisp(kHostXsaveOffset);
  }
  w.Bytes({0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3});

  std::memcpy(pages.code_writable(), w.bytes().data(), w.size());
  uint8_t* data = pages.data();
  std::memcpy(data + kGprOffset, ctx.gpr.data(), 128);
  // Only the arithmetic flags come from the guest: TF, DF, AC, ... stay as the host ABI expects.
  const uint64_t flags_in = (ctx.rflags & kArithmeticFlags) | 0x2;
  std::memcpy(data + kFlagsOffset, &flags_in, 8);
  std::memcpy(data + kBufferOffset, ctx.memory.data(), ctx.memory.size());
  const uint64_t mask = ctx.xstate_mask & kNativeXstateMask;
  std::memcpy(data + kXstateMaskOffset, &mask, 8);
  if (!ctx.xsave_image.empty()) {
    std::memset(data + kGuestXsaveOffset, 0, kNativeXsaveAreaSize);
    std::memcpy(data + kGuestXsaveOffset, ctx.xsave_image.data(), ctx.xsave_image.size());
  }

  void (*fn)();
  const void* entry = pages.code();
  std::memcpy(&fn, &entry, sizeof(fn));
  sigjmp_buf recover;
  t_code_begin = reinterpret_cast<uintptr_t>(pages.code());
  t_code_end = t_code_begin + kPage;
  const int caught = sigsetjmp(recover, 0);
  if (caught == 0) {
    t_recover = &recover;
    fn();
  } else if (vector_state) {
    // Abandoned mid-stub: the host's vector state is still the guest's. Put the host's back.
    uint8_t* host_area = data + kHostXsaveOffset;
    asm volatile("xrstor64 (%0)" : : "r"(host_area), "a"(static_cast<uint32_t>(kNativeXstateMask)), "d"(0u)
                 : "memory");
  }
  t_recover = nullptr;
  if (caught != 0) {
    ctx.fault_signal = caught;
    return absl::OkStatus();
  }

  std::memcpy(ctx.gpr.data(), data + kGprOffset, 128);
  uint64_t flags_out;
  std::memcpy(&flags_out, data + kFlagsOffset, 8);
  ctx.rflags = (ctx.rflags & ~kArithmeticFlags) | (flags_out & kArithmeticFlags);
  std::memcpy(ctx.memory.data(), data + kBufferOffset, ctx.memory.size());
  if (!ctx.xsave_image.empty()) std::memcpy(ctx.xsave_image.data(), data + kGuestXsaveOffset, ctx.xsave_image.size());
  return absl::OkStatus();
}

}  // namespace coalesce
