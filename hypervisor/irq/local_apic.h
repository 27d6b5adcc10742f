// One vCPU's local APIC (xAPIC), emulated in user space because Coalesce uses no in-kernel irqchip: the
// MMIO page at platform::kLapicBase, interrupt acceptance (IRR/ISR/TMR, TPR/PPR), the ICR that sends IPIs
// through the InterruptRouter, the LVT (timer, LINT0/1, error) and the APIC timer on the TimerService.
//
// Thread model: the owning vCPU thread does MMIO and the injection-side calls (PendingInterrupt,
// AcknowledgeInterrupt, Take*); the router, the IOAPIC, the PIC callback and the timer thread call
// Accept / SetLint0 / the timer callback from any thread. Every entry point takes mu_ itself.
//
// Lock order (never violated, so no cycles):
//   - mu_ is a leaf for everything except TimerService::Schedule, which may be called under mu_ (the
//     service's own lock order allows it).
//   - mu_ is NOT held while calling router_->Deliver / router_->BroadcastEoi, kick_(), or
//     TimerService::Cancel (Cancel waits for a running callback, and our callback takes mu_). A stale
//     timer callback is recognised by its generation number and ignored.
//   - Callers may hold their own locks while calling in (the PIC calls SetLint0 under its lock), as long
//     as kick_ does not take those locks.
//
// kick_ is called whenever work appears that the owning vCPU must notice: after Accept, a timer expiry,
// a LINT edge or ExtINT line rising. It may be called on the owning vCPU's own thread (self-IPI).
// Register writes by the owning vCPU (EOI, TPR) do not kick: the vCPU loop re-checks PendingInterrupt()
// after every exit anyway.
#pragma once

#include <bitset>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/base/timer_service.h"
#include "hypervisor/irq/apic_message.h"
#include "hypervisor/irq/apic_vector_set.h"
#include "hypervisor/irq/interrupt_router.h"

namespace coalesce {

// Everything a local APIC holds, for moving its vCPU to another node (hypervisor/vcpu/vcpu_state.h). Plain
// 32/64-bit fields only (no padding): it travels as bytes between nodes of one VM.
struct LocalApicState {
  uint32_t tpr, ldr, dfr, svr, esr, esr_pending, icr_low, icr_high;
  uint32_t lvt_timer, lvt_thermal, lvt_perf, lvt_lint0, lvt_lint1, lvt_error, timer_initial, timer_divide;
  uint32_t irr[8], isr[8], tmr[8];
  uint32_t timer_running, lint0_level, lint1_level, extint_message, nmi_pending, init_pending, wait_for_sipi;
  int32_t sipi_vector;        // -1: none
  int64_t timer_remaining_ns;  // the countdown left when saved (the deadline is host-clock relative)
  uint64_t pv_eoi_msr;         // MSR_KVM_PV_EOI_EN as the guest wrote it
};

class LocalApic final {
 public:
  // `router` and `timers` are not owned and must outlive this object. `bootstrap` selects the BSP's
  // reset state (LINT0 in ExtINT virtual-wire mode).
  LocalApic(uint32_t apic_id, bool bootstrap, InterruptRouter* router, TimerService* timers,
            std::function<void()> kick);
  ~LocalApic();
  LocalApic(const LocalApic&) = delete;
  LocalApic& operator=(const LocalApic&) = delete;

  // --- MMIO (owning vCPU thread). `offset` is within the 4 KiB page. Registers are 32-bit and 16-byte
  // aligned; narrower reads return the addressed bytes, other-sized or misaligned writes are ignored
  // (logged once), as hardware leaves them undefined.
  void MmioRead(uint64_t offset, std::span<uint8_t> data);
  void MmioWrite(uint64_t offset, std::span<const uint8_t> data);

  // --- Delivery side (router, any thread).
  // Physical: the APIC id or 0xff. Logical: LDR against the DFR's flat or cluster model.
  [[nodiscard]] bool MatchesDestination(DestinationMode mode, uint8_t destination) const;
  [[nodiscard]] uint32_t apic_id() const { return apic_id_; }
  // The APR, used by lowest-priority arbitration (lower wins).
  [[nodiscard]] uint8_t ArbitrationPriority() const;
  // Whether SVR's software-enable bit is set; a disabled APIC drops fixed interrupts, so the router
  // prefers enabled APICs for lowest-priority delivery.
  [[nodiscard]] bool SoftwareEnabled() const;
  // Accepts one message addressed to this APIC: fixed / lowest priority -> IRR (+TMR for level), NMI,
  // INIT (assert; a level de-assert is ignored), SIPI (only while waiting for one after INIT), ExtINT.
  // Then kicks the vCPU. SMI is not emulated (logged once).
  void Accept(const ApicMessage& msg);

  // --- vCPU-thread side (injection).
  // Highest IRR vector whose priority class is above PPR's, if the APIC is software-enabled.
  [[nodiscard]] std::optional<uint8_t> PendingInterrupt() const;
  // Moves the highest IRR vector to ISR and returns it. If nothing is deliverable any more, returns the
  // spurious vector (SVR[7:0]) without touching ISR, as hardware does when TPR was raised meanwhile.
  uint8_t AcknowledgeInterrupt();
  // Consumes a pending NMI.
  bool TakeNmi();
  // Consumes a pending INIT. It also applies INIT to the APIC itself (registers back to their reset
  // values, id kept) and arms it to accept a SIPI: the vCPU loop resets the CPU state and waits for
  // TakeStartup(). Do not call Reset() afterwards, that would discard a SIPI that already arrived.
  bool TakeInit();
  // Consumes a pending SIPI vector (start at vector << 12). A SIPI is accepted once per INIT, and by an
  // AP once after power-on (its wait-for-SIPI state); the second SIPI of the usual INIT-SIPI-SIPI
  // sequence and SIPIs to the BSP are ignored.
  std::optional<uint8_t> TakeStartup();
  // The PIC must be asked for a vector (INTA): LINT0 is ExtINT, unmasked and its line is high, or an
  // ExtINT message arrived (then call AcknowledgeExtInt() after the PIC's INTA).
  [[nodiscard]] bool ExtIntPending() const;
  void AcknowledgeExtInt();
  // Level of the LINT0 / LINT1 pins. LINT0 carries the PIC's INTR on the BSP; LINT1 is usually NMI.
  // In fixed or NMI mode a rising edge raises the LVT's vector or an NMI; ExtINT follows the level.
  void SetLint0(bool level);
  void SetLint1(bool level);
  // Anything that should wake a halted vCPU: deliverable interrupt, NMI, INIT, SIPI, ExtINT.
  [[nodiscard]] bool HasWork() const;
  // What wakes a vCPU halted with interrupts disabled (cli; hlt): NMI, INIT, SIPI.
  [[nodiscard]] bool HasNonMaskableWork() const;
  // --- PV EOI (KVM's paravirtual EOI, KVM_FEATURE_PV_EOI), served here because the APIC is in user space. The
  // guest writes MSR_KVM_PV_EOI_EN with the guest-physical address of a flag (bit 0: enabled). Before the vCPU
  // enters the guest its loop sets the flag when the interrupt in service may end without an EOI write: it is
  // the only one in service, none waits in IRR (an EOI would have to let it in at once) and it is
  // edge-triggered (no IOAPIC waits for its EOI). The guest's EOI then clears the flag instead of writing the
  // EOI register, which saves an exit per interrupt; the loop sees the flag cleared at the next exit and ends
  // the interrupt with PvEoiCompleted(). These rules are KVM's own for its in-kernel APIC.
  // A value with reserved bits (the address must be 4-byte aligned) is refused: the guest gets #GP.
  absl::Status SetPvEoiMsr(uint64_t value);
  [[nodiscard]] uint64_t pv_eoi_msr() const;
  // The flag's guest-physical address if the flag may be set for the next entry, else nullopt.
  [[nodiscard]] std::optional<uint64_t> PvEoiFlagIfSkippable() const;
  // The guest cleared the flag: the interrupt in service has ended, as by a write of the EOI register.
  void PvEoiCompleted();

  // Power-on reset: registers to their reset values, pending events and the timer dropped; id kept; an
  // AP waits for a SIPI again.
  void Reset();

  // The whole state, for moving the vCPU elsewhere; LoadState replaces it (the timer restarts with the
  // countdown it had left). The APIC id is not part of it: the target APIC has the same id.
  [[nodiscard]] LocalApicState SaveState() const;
  void LoadState(const LocalApicState& state);

  // Guest-caused anomalies (illegal vectors, bad accesses, dropped messages), for counters and tests.
  [[nodiscard]] uint64_t anomalies() const;

 private:
  enum class Lint : uint8_t { k0, k1 };

  uint32_t ReadRegisterLocked(uint32_t reg) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Handles a 32-bit write. May fill *to_send (ICR) or *eoi_broadcast (level EOI) for the caller to act
  // on after unlocking, and returns a timer id the caller must Cancel() after unlocking (0 if none).
  TimerService::TimerId WriteRegisterLocked(uint32_t reg, uint32_t value, std::optional<ApicMessage>* to_send,
                                            std::optional<uint8_t>* eoi_broadcast)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteSvrLocked(uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<ApicMessage> BuildIcrMessageLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<uint8_t> EoiLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Register state to reset values (keeps id and pending events). Returns a timer id to Cancel().
  TimerService::TimerId ResetRegistersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  uint8_t PprLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint8_t AprLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool SoftwareEnabledLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::optional<uint8_t> PendingLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool ExtIntPendingLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool HasWorkLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Sets IRR (and TMR = level) for a locally or externally raised vector. Returns false if refused
  // (illegal vector, which also records a receive error).
  bool RaiseLocked(uint8_t vector, bool level) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records error bits and raises the LVT error interrupt if it is unmasked.
  void SignalErrorLocked(uint32_t esr_bits) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A LINT pin changed level. Returns true if the vCPU should be kicked.
  bool LintEdgeLocked(Lint pin, bool old_level, bool new_level) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetLint(Lint pin, bool level);

  // --- Timer.
  uint64_t TimerDivisorLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint32_t TimerCurrentCountLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Time to the deadline from `now`, never negative (a one-shot past its deadline has none left).
  int64_t TimerLeftNsLocked(TimerService::Clock::time_point now) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The reload interval of periodic mode: initial count x divisor, clamped to a floor.
  std::chrono::nanoseconds TimerPeriodicIntervalLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // (Re)starts the countdown from the initial count. Returns the superseded timer id to Cancel().
  TimerService::TimerId StartTimerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops the countdown; returns the timer id to Cancel().
  TimerService::TimerId StopTimerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleTimerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnTimerExpired(uint64_t generation);

  void NoteUnimplementedLocked(uint32_t reg, bool write) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint32_t apic_id_;
  const bool bootstrap_;
  InterruptRouter* const router_;
  TimerService* const timers_;
  const std::function<void()> kick_;

  mutable absl::Mutex mu_;
  // Architectural registers.
  uint32_t tpr_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t ldr_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t dfr_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t svr_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t esr_ ABSL_GUARDED_BY(mu_) = 0;          // what the guest reads (latched by an ESR write)
  uint32_t esr_pending_ ABSL_GUARDED_BY(mu_) = 0;  // errors seen since the last ESR write
  uint32_t icr_low_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t icr_high_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t lvt_timer_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t lvt_thermal_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t lvt_perf_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t lvt_lint0_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t lvt_lint1_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t lvt_error_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t timer_initial_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t timer_divide_ ABSL_GUARDED_BY(mu_) = 0;
  ApicVectorSet irr_ ABSL_GUARDED_BY(mu_);
  ApicVectorSet isr_ ABSL_GUARDED_BY(mu_);
  ApicVectorSet tmr_ ABSL_GUARDED_BY(mu_);

  // Timer countdown: while running, the count reaches 0 at timer_deadline_; one tick = divisor ns.
  bool timer_running_ ABSL_GUARDED_BY(mu_) = false;
  TimerService::Clock::time_point timer_deadline_ ABSL_GUARDED_BY(mu_);
  uint64_t timer_generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped on every restart/stop
  uint64_t pv_eoi_msr_ ABSL_GUARDED_BY(mu_) = 0;
  TimerService::TimerId timer_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool destroying_ ABSL_GUARDED_BY(mu_) = false;

  // Pins and pending non-vectored events.
  bool lint0_level_ ABSL_GUARDED_BY(mu_) = false;
  bool lint1_level_ ABSL_GUARDED_BY(mu_) = false;
  bool extint_message_ ABSL_GUARDED_BY(mu_) = false;
  bool nmi_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool init_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool wait_for_sipi_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<uint8_t> sipi_vector_ ABSL_GUARDED_BY(mu_);

  uint64_t anomalies_ ABSL_GUARDED_BY(mu_) = 0;
  std::bitset<256> logged_ ABSL_GUARDED_BY(mu_);  // one bit per 16-byte register slot, for log-once
  bool smi_logged_ ABSL_GUARDED_BY(mu_) = false;
  bool icr_logged_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coalesce
