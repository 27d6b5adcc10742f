// One vCPU: a thread running KVM_RUN in a loop, as a small state machine:
//
//   kCreated -> (BSP) kRunning | (AP) kWaitForSipi
//   kWaitForSipi --SIPI--> kRunning          (INIT while waiting: stays; APs start here)
//   kRunning --HLT--> kHalted --interrupt/NMI/INIT/SIPI--> kRunning
//   kRunning --INIT--> kWaitForSipi
//   any --RunControl::Stop--> kStopped
//
// Pausing (virsh suspend): while the node's RunControl is paused, the thread waits at its pause gate at the
// next exit boundary, state unchanged and kept in KVM, and goes on where it was once the flag clears
// (pause_gate.h holds and releases a node's vCPUs).
//
// Parking (vCPU migration, issue 12): Park() ends the thread at an exit boundary without changing the state
// (kRunning, kHalted or kWaitForSipi); the KVM vCPU is then idle and its state can be captured. Resume()
// starts a thread again in a given state, here or, after the state was restored, on the node it moved to.
//
// Interrupts come from the vCPU's LocalApic (and, through LINT0 in ExtINT mode, the PIC); the loop injects
// them with KVM_INTERRUPT when kvm_run says the guest can take one, else asks for an interrupt window.
// Other threads wake the vCPU with Kick(): immediate_exit + a signal makes KVM_RUN return at once.
//
// PV EOI (LocalApic): the loop sets the guest's flag before an entry when the APIC allows it, and after every
// exit reads it back before anything else, so an interrupt the guest ended without an exit is ended in the
// APIC before any decision depends on it. A vCPU that parks clears a flag it set: its next node knows nothing
// of it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/kvm/vcpu_fd.h"
#include "hypervisor/memory/guest_memory.h"
#include "hypervisor/vcpu/halt_poll.h"
#include "hypervisor/vcpu/io_handler.h"
#include "hypervisor/vcpu/run_control.h"
#include "hypervisor/vcpu/vcpu_stats.h"

namespace coalesce {

class LocalApic;

class Vcpu final {
 public:
  enum class State { kCreated, kWaitForSipi, kRunning, kHalted, kStopped };

  struct Wiring {
    LocalApic* lapic = nullptr;               // this vCPU's own APIC (not owned)
    IoHandler* io = nullptr;                  // serves PIO/MMIO outside the APIC page
    RunControl* run_control = nullptr;
    const GuestMemory* memory = nullptr;      // for completing instructions PVM cannot emulate
    std::function<uint8_t()> ext_int_ack;     // INTA cycle of the PIC (BSP only; empty elsewhere)
    bool sample_rip = false;                  // record guest RIP at each asynchronous kick (--rip-samples)
    // Replays the guest's writes waiting in KVM's coalesced MMIO ring (hypervisor/kvm/coalesced_mmio_ring.h),
    // called after every exit before it is handled; empty where the node coalesces none.
    std::function<void()> replay_posted_writes;
    // Called while a halted vCPU polls: lets devices whose completions wait for another thread's wake-up
    // raise them now (virtio::VirtioDevice::PollUsed); true if one did. Empty: nothing to poll.
    std::function<bool()> poll_completions;
    // The longest a halted vCPU spins for a wake-up before it sleeps (hypervisor/vcpu/halt_poll.h); zero: never.
    absl::Duration halt_poll_max = HaltPollWindow::kDefaultMax;
  };

  Vcpu(VcpuFd fd, bool bootstrap, Wiring wiring);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  void Start();
  // Where the vCPU was when it parked: what Resume() needs to go on (here or on another node).
  struct RunState {
    State state = State::kWaitForSipi;
    bool halted_with_interrupts = true;  // RFLAGS.IF at the HLT (kHalted only)
  };
  // Stops the thread at its next exit boundary and waits for it (a forwarded I/O access in flight completes
  // first). Not from the vCPU's own thread. Returns where it was; a stopped vCPU says kStopped.
  RunState Park();
  // Starts a thread for a parked (or never started) vCPU in `state`.
  void Resume(RunState state);
  [[nodiscard]] bool running_thread() const { return thread_.joinable(); }
  // The thread waits at its pause gate now.
  [[nodiscard]] bool at_pause_gate() const { return at_pause_gate_.load(std::memory_order_acquire); }
  // Runs no guest code now and will not before the node resumes: at its pause gate, or without a thread
  // (never started, parked, stopped).
  [[nodiscard]] bool held() const { return at_pause_gate() || thread_exited_.load(std::memory_order_acquire); }
  // Makes the vCPU thread re-examine its state soon: leaves KVM_RUN or a halt/SIPI wait. Any thread.
  void Kick();
  // Records where the guest is now (--rip-samples): kicks a running vCPU and samples RIP at the exit; a
  // halted or waiting vCPU counts as idle (RIP 0).
  void RequestRipSample();
  // Prints this vCPU's registers to stderr at its next exit (from its own thread: KVM_GET_REGS is only
  // answered between runs).
  void RequestRegisterDump();
  void Join();

  [[nodiscard]] State state() const { return state_.load(std::memory_order_acquire); }
  [[nodiscard]] uint32_t id() const { return fd_.id(); }
  [[nodiscard]] VcpuFd& fd() { return fd_; }
  [[nodiscard]] const VcpuStats& stats() const { return stats_; }
  // Human-readable register dump (for fatal errors). Only from the vCPU thread or after it stopped.
  [[nodiscard]] std::string DumpRegisters() const;

 private:
  void ThreadMain();
  void ThreadBody();
  // One trip through KVM_RUN with interrupt injection before it. Returns false when the vCPU must stop.
  bool RunOnce();
  void InjectPendingInterrupts();
  bool HandleExit(const VcpuExit& exit);
  bool HandleMsrExit(const VcpuExit& exit);
  // PV EOI: sets, keeps or clears the guest's flag before an entry; after an exit, ends the interrupt if the
  // guest cleared it; before the thread ends for a move, clears a flag still set.
  void PreparePvEoiFlag();
  void CollectPvEoiFlag();
  void DropPvEoiFlag();
  bool WritePvEoiFlag(uint64_t gpa, uint8_t value);
  void WaitForWork(State waiting_in);
  // Spins until Kick() is called or `until`; true if it was.
  bool PollForKick(std::chrono::steady_clock::time_point until);
  void WaitAtPauseGate();
  bool HandleStartupSignals();  // INIT/SIPI; true if the state changed
  void Fail(int status, const std::string& what);

  VcpuFd fd_;
  const bool bootstrap_;
  Wiring wiring_;
  VcpuStats stats_;
  std::atomic<bool> rip_sample_requested_{false};
  std::atomic<bool> register_dump_requested_{false};
  std::atomic<State> state_{State::kCreated};
  std::atomic<bool> in_guest_{false};
  std::atomic<bool> park_requested_{false};
  std::atomic<bool> thread_exited_{true};  // no thread runs (none started yet, or it ended)
  std::atomic<bool> at_pause_gate_{false};
  bool halted_with_interrupts_ = true;  // RFLAGS.IF at the last HLT (vCPU thread only)
  // An NMI handed to KVM (KVM_NMI, or a restored state) may still wait there: a HLT must ask KVM before it
  // sleeps. Cleared when KVM says none is pending or being injected (vCPU thread only; set by Resume before it).
  bool nmi_may_be_in_kvm_ = true;
  std::optional<uint64_t> pv_eoi_flag_set_;  // where the loop set the guest's PV EOI flag (vCPU thread only)
  std::thread thread_;

  HaltPollWindow halt_poll_;  // vCPU thread only
  std::atomic<bool> kick_seen_{false};  // set by Kick(), for a halt poll to see without the lock
  absl::Mutex wake_mu_;
  bool woken_ ABSL_GUARDED_BY(wake_mu_) = false;
};

const char* VcpuStateName(Vcpu::State s);

}  // namespace coalesce
