#include "hypervisor/vcpu/vcpu.h"

#include <asm/kvm_para.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <mutex>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/base/thread_name.h"
#include "hypervisor/boot/cpu_startup.h"
#include "hypervisor/emul/instruction_completer.h"
#include "hypervisor/irq/local_apic.h"
#include "hypervisor/vcpu/exit_status.h"
#include "hypervisor/vcpu/model_msrs.h"

namespace coalesce {
namespace {

// The kick signal only has to interrupt KVM_RUN (EINTR); its handler does nothing.
constexpr int kKickSignal = SIGUSR1;

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(kKickSignal, &sa, nullptr);
  });
}

bool InLapicPage(uint64_t addr) {
  return addr >= platform::kLapicBase && addr < platform::kLapicBase + platform::kLapicSize;
}

}  // namespace

const char* VcpuStateName(Vcpu::State s) {
  switch (s) {
    case Vcpu::State::kCreated: return "created";
    case Vcpu::State::kWaitForSipi: return "wait-for-sipi";
    case Vcpu::State::kRunning: return "running";
    case Vcpu::State::kHalted: return "halted";
    case Vcpu::State::kStopped: return "stopped";
  }
  return "?";
}

Vcpu::Vcpu(VcpuFd fd, bool bootstrap, Wiring wiring)
    : fd_(std::move(fd)), bootstrap_(bootstrap), wiring_(std::move(wiring)), halt_poll_(wiring_.halt_poll_max) {
  InstallKickHandler();
}

Vcpu::~Vcpu() { Join(); }

void Vcpu::Start() { Resume({bootstrap_ ? State::kRunning : State::kWaitForSipi, true}); }

Vcpu::RunState Vcpu::Park() {
  park_requested_.store(true, std::memory_order_release);
  // A kick that lands between the thread's check and its entry into KVM_RUN can be missed until the next
  // exit; a guest computing without exits would then not park. Kick until the thread is out.
  while (thread_.joinable() && !thread_exited_.load(std::memory_order_acquire)) {
    Kick();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  Join();
  park_requested_.store(false, std::memory_order_release);
  return {state(), halted_with_interrupts_};
}

void Vcpu::Resume(RunState run) {
  Join();
  halted_with_interrupts_ = run.halted_with_interrupts;
  nmi_may_be_in_kvm_ = true;  // a vCPU state restored here may carry one
  state_.store(run.state, std::memory_order_release);
  thread_exited_.store(false, std::memory_order_release);
  thread_ = StartNamedThread(absl::StrFormat("vcpu%u", id()), [this] { ThreadMain(); });
}

void Vcpu::Join() {
  if (thread_.joinable()) thread_.join();
}

void Vcpu::Kick() {
  kick_seen_.store(true, std::memory_order_release);
  {
    absl::MutexLock lock(&wake_mu_);
    woken_ = true;
  }
  // Order matters: immediate_exit first, so a kick racing with the entry into KVM_RUN still exits at once.
  __atomic_store_n(&fd_.run()->immediate_exit, 1, __ATOMIC_SEQ_CST);
  if (in_guest_.load(std::memory_order_seq_cst) && thread_.joinable()) {
    pthread_kill(thread_.native_handle(), kKickSignal);
  }
}

void Vcpu::RequestRipSample() {
  const State s = state();
  if (s != State::kRunning) {
    if (s != State::kStopped && s != State::kCreated) stats_.SampleRip(0);
    return;
  }
  rip_sample_requested_.store(true, std::memory_order_release);
  Kick();
}

void Vcpu::RequestRegisterDump() {
  if (state() != State::kRunning) {
    std::fprintf(stderr, "vcpu%u: %s\n", id(), VcpuStateName(state()));
    return;
  }
  register_dump_requested_.store(true, std::memory_order_release);
  Kick();
}

void Vcpu::ThreadMain() {
  ThreadBody();
  if (park_requested_.load(std::memory_order_acquire)) DropPvEoiFlag();
  thread_exited_.store(true, std::memory_order_release);
}

void Vcpu::ThreadBody() {
  while (!wiring_.run_control->stopping()) {
    if (park_requested_.load(std::memory_order_acquire)) return;  // state kept for Resume() or a move
    if (wiring_.run_control->paused()) {
      WaitAtPauseGate();
      continue;
    }
    State s = state();
    if (s == State::kWaitForSipi || s == State::kHalted) {
      WaitForWork(s);
      continue;
    }
    if (HandleStartupSignals()) continue;
    if (!RunOnce()) break;
  }
  state_.store(State::kStopped, std::memory_order_release);
}

bool Vcpu::HandleStartupSignals() {
  LocalApic* apic = wiring_.lapic;
  // TakeInit() also resets the APIC and arms it for a SIPI (which may already be pending).
  if (apic->TakeInit()) {
    state_.store(State::kWaitForSipi, std::memory_order_release);
    LOG_DEBUG("vcpu%u: INIT, waiting for SIPI", id());
    return true;
  }
  // A SIPI to a running vCPU is ignored, as on real hardware (Linux sends two).
  (void)apic->TakeStartup();
  return false;
}

void Vcpu::WaitForWork(State waiting_in) {
  LocalApic* apic = wiring_.lapic;
  const auto halted_at = std::chrono::steady_clock::now();
  bool polled = waiting_in != State::kHalted || halt_poll_.window() <= absl::ZeroDuration();
  bool caught_by_poll = false;
  while (!wiring_.run_control->stopping() && !park_requested_.load(std::memory_order_acquire) &&
         !wiring_.run_control->paused()) {
    {
      absl::MutexLock lock(&wake_mu_);
      woken_ = false;
    }
    kick_seen_.store(false, std::memory_order_release);
    if (waiting_in == State::kWaitForSipi) {
      (void)apic->TakeInit();
      if (auto vector = apic->TakeStartup()) {
        if (absl::Status st = ApplyStartupState(*vector, fd_); !st.ok()) {
          Fail(exit_status::kHostFailure, absl::StrFormat("vcpu%u: start-up: %s", id(), st.ToString()));
          return;
        }
        LOG_DEBUG("vcpu%u: SIPI vector %#x", id(), *vector);
        state_.store(State::kRunning, std::memory_order_release);
        return;
      }
    } else if (halted_with_interrupts_ ? apic->HasWork() : apic->HasNonMaskableWork()) {
      // `cli; hlt` (a stopped CPU) sleeps through maskable interrupts instead of spinning on them.
      stats_.CountHalt(caught_by_poll);
      halt_poll_.Record(absl::FromChrono(std::chrono::steady_clock::now() - halted_at));
      state_.store(State::kRunning, std::memory_order_release);
      return;
    }
    if (!polled) {
      // Once per halt, before the first sleep: a wake-up within the window costs no scheduler round trip.
      polled = true;
      if (PollForKick(halted_at + absl::ToChronoNanoseconds(halt_poll_.window()))) {
        caught_by_poll = true;
        continue;
      }
    }
    absl::MutexLock lock(&wake_mu_);
    // The timeout only bounds the damage of a lost wake-up; wake-ups come from Kick().
    wake_mu_.AwaitWithTimeout(absl::Condition(&woken_), absl::Milliseconds(100));
  }
}

bool Vcpu::PollForKick(std::chrono::steady_clock::time_point until) {
  while (std::chrono::steady_clock::now() < until) {
    if (kick_seen_.load(std::memory_order_acquire)) return true;
    // A completion raised here reaches some vCPU's APIC, and kicks it: this one sees kick_seen_ next time round.
    if (wiring_.poll_completions && wiring_.poll_completions()) continue;
    __builtin_ia32_pause();
  }
  return kick_seen_.load(std::memory_order_acquire);
}

void Vcpu::WaitAtPauseGate() {
  at_pause_gate_.store(true, std::memory_order_release);
  // Bounded waits: a park (a move while paused) is seen within one of them.
  while (wiring_.run_control->paused() && !wiring_.run_control->stopping() &&
         !park_requested_.load(std::memory_order_acquire)) {
    wiring_.run_control->WaitWhilePaused(absl::Milliseconds(50));
  }
  at_pause_gate_.store(false, std::memory_order_release);
}

void Vcpu::InjectPendingInterrupts() {
  kvm_run* run = fd_.run();
  LocalApic* apic = wiring_.lapic;
  if (apic->TakeNmi()) {
    if (absl::Status st = fd_.Nmi(); !st.ok()) LOG_WARN("vcpu%u: %s", id(), st.ToString());
    nmi_may_be_in_kvm_ = true;
  }
  bool have_vector = apic->PendingInterrupt().has_value();
  bool have_extint = !have_vector && wiring_.ext_int_ack && apic->ExtIntPending();
  if (!have_vector && !have_extint) {
    run->request_interrupt_window = 0;
    return;
  }
  if (!run->ready_for_interrupt_injection) {
    run->request_interrupt_window = 1;
    return;
  }
  uint8_t vector = have_vector ? apic->AcknowledgeInterrupt() : wiring_.ext_int_ack();
  if (absl::Status st = fd_.Interrupt(vector); !st.ok()) {
    LOG_WARN("vcpu%u: KVM_INTERRUPT %#x: %s", id(), vector, st.ToString());
  } else {
    stats_.CountInjection();
  }
  run->request_interrupt_window = 0;
}

bool Vcpu::WritePvEoiFlag(uint64_t gpa, uint8_t value) {
  if (wiring_.memory == nullptr) return false;
  const uint8_t bytes[1] = {value};
  if (absl::Status st = wiring_.memory->Write(gpa, bytes); !st.ok()) {
    LOG_WARN_SAMPLED("vcpu%u: PV EOI flag at %#x: %s (the guest's EOIs take exits)", id(), gpa, st.ToString());
    return false;
  }
  return true;
}

void Vcpu::PreparePvEoiFlag() {
  const std::optional<uint64_t> wanted = wiring_.lapic->PvEoiFlagIfSkippable();
  if (pv_eoi_flag_set_ == wanted) return;
  // Clear a flag set earlier, unless the guest has since moved it or turned PV EOI off (the word is its own
  // again then). Until it is cleared the guest could end the interrupt without the APIC knowing.
  if (pv_eoi_flag_set_ && wiring_.lapic->pv_eoi_msr() == (*pv_eoi_flag_set_ | 1)) {
    (void)WritePvEoiFlag(*pv_eoi_flag_set_, 0);
  }
  pv_eoi_flag_set_.reset();
  if (wanted && WritePvEoiFlag(*wanted, 1)) pv_eoi_flag_set_ = wanted;
}

void Vcpu::CollectPvEoiFlag() {
  if (!pv_eoi_flag_set_) return;
  uint8_t flag = 1;
  if (absl::Status st = wiring_.memory->Read(*pv_eoi_flag_set_, {&flag, 1}); !st.ok()) return;
  if ((flag & 1) != 0) return;  // not ended yet: the flag stays set while the APIC still allows it
  pv_eoi_flag_set_.reset();
  stats_.CountPvEoi();
  wiring_.lapic->PvEoiCompleted();
}

void Vcpu::DropPvEoiFlag() {
  CollectPvEoiFlag();
  if (pv_eoi_flag_set_) (void)WritePvEoiFlag(*pv_eoi_flag_set_, 0);
  pv_eoi_flag_set_.reset();
}

bool Vcpu::RunOnce() {
  kvm_run* run = fd_.run();
  __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
  InjectPendingInterrupts();
  PreparePvEoiFlag();
  in_guest_.store(true, std::memory_order_seq_cst);
  absl::StatusOr<VcpuExit> exit = fd_.Run();
  in_guest_.store(false, std::memory_order_seq_cst);
  CollectPvEoiFlag();
  if (wiring_.replay_posted_writes) wiring_.replay_posted_writes();
  if (!exit.ok()) {
    Fail(exit_status::kHostFailure, absl::StrFormat("vcpu%u: %s", id(), exit.status().ToString()));
    return false;
  }
  stats_.CountExit(ExitKindIndex(*exit));
  return HandleExit(*exit);
}

bool Vcpu::HandleExit(const VcpuExit& e) {
  const uint32_t vid = id();
  IoHandler* io = wiring_.io;
  if (auto* in = std::get_if<exit::IoIn>(&e)) {
    for (uint32_t i = 0; i < in->count; ++i) io->PioRead(vid, in->port, in->data.subspan(i * in->size, in->size));
    return true;
  }
  if (auto* out = std::get_if<exit::IoOut>(&e)) {
    for (uint32_t i = 0; i < out->count; ++i) {
      io->PioWrite(vid, out->port, out->data.subspan(i * out->size, out->size));
    }
    return true;
  }
  if (auto* rd = std::get_if<exit::MmioRead>(&e)) {
    if (InLapicPage(rd->addr)) wiring_.lapic->MmioRead(rd->addr - platform::kLapicBase, rd->data);
    else io->MmioRead(vid, rd->addr, rd->data);
    return true;
  }
  if (auto* wr = std::get_if<exit::MmioWrite>(&e)) {
    if (InLapicPage(wr->addr)) wiring_.lapic->MmioWrite(wr->addr - platform::kLapicBase, wr->data);
    else io->MmioWrite(vid, wr->addr, wr->data);
    return true;
  }
  if (std::holds_alternative<exit::MsrRead>(e) || std::holds_alternative<exit::MsrWrite>(e)) {
    return HandleMsrExit(e);
  }
  if (std::holds_alternative<exit::Hlt>(e)) {
    // An NMI we injected while the guest had NMIs blocked (inside its NMI handler) waits in KVM until the
    // handler's IRET. If the guest halts right after, KVM still holds it: go back in instead of sleeping,
    // or the NMI would be lost. (KVM's own halt would wake for it; our user-space halt must ask.)
    // Asked only while an NMI we gave KVM may still be there: one ioctl less on every other HLT.
    if (nmi_may_be_in_kvm_) {
      auto ev = fd_.GetVcpuEvents();
      if (ev.ok() && (ev->nmi.pending || ev->nmi.injected)) return true;
      if (ev.ok()) nmi_may_be_in_kvm_ = false;
    }
    halted_with_interrupts_ = fd_.run()->if_flag != 0;
    state_.store(State::kHalted, std::memory_order_release);
    return true;
  }
  if (std::holds_alternative<exit::Interrupted>(e) || std::holds_alternative<exit::IrqWindowOpen>(e)) {
    // The sampler's kick lands wherever the guest happens to be: a statistical profile of guest time.
    if (register_dump_requested_.exchange(false, std::memory_order_acq_rel)) {
      std::fprintf(stderr, "%s\n", DumpRegisters().c_str());
    }
    if (rip_sample_requested_.exchange(false, std::memory_order_acq_rel)) {
      if (auto r = fd_.GetRegs(); r.ok()) stats_.SampleRip(r->rip);
    }
    return true;
  }
  if (std::holds_alternative<exit::Shutdown>(e)) {
    // On AMD, KVM reinitializes the VMCB and resets the vCPU at a shutdown intercept (the VMCB is undefined
    // after one), so the dump that follows shows the reset state (RIP 0xfff0), not where the guest faulted.
    Fail(exit_status::kGuestCrashed,
         absl::StrFormat("vcpu%u: triple fault (KVM_EXIT_SHUTDOWN)%s", vid,
                         HostCpuIsAmd() ? "; on AMD, KVM has already reset this vCPU: the registers below are its "
                                          "reset state, not where it faulted"
                                        : ""));
    return false;
  }
  if (auto* ie = std::get_if<exit::InternalError>(&e)) {
    if (ie->suberror == KVM_INTERNAL_ERROR_EMULATION) {
      absl::StatusOr<CompletedInstructions> done = CompleteFailedInstruction(fd_, *wiring_.memory, *ie);
      if (done.ok()) {
        stats_.CountEmulation(done->mnemonic);
        if (done->continued != 0) stats_.CountEmulation("continued", done->continued);
        return true;
      }
      Fail(exit_status::kGuestCrashed,
           absl::StrFormat("vcpu%u: KVM could not emulate an instruction and neither can we: %s", vid,
                           done.status().message()));
      return false;
    }
    Fail(exit_status::kGuestCrashed,
         absl::StrFormat("vcpu%u: KVM internal error, suberror %u", vid, ie->suberror));
    return false;
  }
  if (auto* se = std::get_if<exit::SystemEvent>(&e)) {
    if (se->type == KVM_SYSTEM_EVENT_RESET) {
      wiring_.run_control->Stop(exit_status::kGuestReset, absl::StrFormat("vcpu%u: guest reset", vid));
    } else {
      wiring_.run_control->Stop(exit_status::kPowerOff, absl::StrFormat("vcpu%u: system event %u", vid, se->type));
    }
    return false;
  }
  if (auto* fe = std::get_if<exit::FailEntry>(&e)) {
    Fail(exit_status::kGuestCrashed,
         absl::StrFormat("vcpu%u: VM entry failed, hardware reason %#x", vid, fe->reason));
    return false;
  }
  if (auto* u = std::get_if<exit::Unknown>(&e)) {
    Fail(exit_status::kHostFailure, absl::StrFormat("vcpu%u: unexpected KVM exit reason %u", vid, u->reason));
    return false;
  }
  Fail(exit_status::kHostFailure, absl::StrFormat("vcpu%u: unhandled exit %s", vid, ExitKindName(e)));
  return false;
}

bool Vcpu::HandleMsrExit(const VcpuExit& e) {
  // Only MSR_KVM_PV_EOI_EN is handed to user space (node_vcpus.cc); anything else would be a KVM surprise,
  // answered as an MSR that does not exist.
  if (auto* rd = std::get_if<exit::MsrRead>(&e)) {
    const bool known = rd->index == MSR_KVM_PV_EOI_EN;
    *rd->data = known ? wiring_.lapic->pv_eoi_msr() : 0;
    *rd->error = known ? 0 : 1;
    if (!known) LOG_WARN_SAMPLED("vcpu%u: RDMSR %#x reached user space: #GP", id(), rd->index);
    return true;
  }
  const auto& wr = std::get<exit::MsrWrite>(e);
  if (wr.index != MSR_KVM_PV_EOI_EN) {
    LOG_WARN_SAMPLED("vcpu%u: WRMSR %#x reached user space: #GP", id(), wr.index);
    *wr.error = 1;
    return true;
  }
  absl::Status st = wiring_.lapic->SetPvEoiMsr(wr.data);
  if (!st.ok()) LOG_WARN_SAMPLED("vcpu%u: %s: #GP", id(), st.message());
  *wr.error = st.ok() ? 0 : 1;
  return true;
}

void Vcpu::Fail(int status, const std::string& what) {
  wiring_.run_control->Stop(status, what + "\n" + DumpRegisters());
}

std::string Vcpu::DumpRegisters() const {
  auto regs = fd_.GetRegs();
  auto sregs = fd_.GetSregs();
  if (!regs.ok() || !sregs.ok()) return "(registers unavailable)";
  const kvm_regs& r = *regs;
  const kvm_sregs& s = *sregs;
  return absl::StrFormat(
      "vcpu%u registers:\n"
      " rip=%016x rflags=%016x\n"
      " rax=%016x rbx=%016x rcx=%016x rdx=%016x\n"
      " rsi=%016x rdi=%016x rbp=%016x rsp=%016x\n"
      " r8 =%016x r9 =%016x r10=%016x r11=%016x\n"
      " r12=%016x r13=%016x r14=%016x r15=%016x\n"
      " cs=%04x base=%x l=%u db=%u  ss=%04x ds=%04x es=%04x\n"
      " cr0=%x cr2=%x cr3=%x cr4=%x efer=%x\n"
      " gdt=%x/%x idt=%x/%x",
      id(), r.rip, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10,
      r.r11, r.r12, r.r13, r.r14, r.r15, s.cs.selector, s.cs.base, s.cs.l, s.cs.db, s.ss.selector,
      s.ds.selector, s.es.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.gdt.base, s.gdt.limit,
      s.idt.base, s.idt.limit);
}

}  // namespace coalesce
