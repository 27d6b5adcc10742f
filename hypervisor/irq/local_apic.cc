#include "hypervisor/irq/local_apic.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/bus/bus_device.h"
#include "hypervisor/irq/apic_registers.h"

namespace coalesce {
namespace {

using Clock = TimerService::Clock;

// A periodic timer faster than this would keep the timer thread and the vCPU busy with nothing but
// timer interrupts; a guest may program it (count 1, divide 1), so clamp as KVM does (it uses 200 us).
constexpr std::chrono::nanoseconds kMinPeriodicInterval{100'000};

// The bus clock runs at platform::kApicBusHz; one tick before division is this many nanoseconds.
static_assert(platform::kApicBusHz == 1'000'000'000ULL, "timer arithmetic assumes 1 tick = 1 ns");

uint32_t Lvt(uint32_t value, uint32_t writable, bool software_enabled) {
  uint32_t lvt = value & writable;
  // While the APIC is software-disabled every LVT entry stays masked (SDM: "mask bits cannot be cleared").
  if (!software_enabled) lvt |= apic::kLvtMasked;
  return lvt;
}

}  // namespace

LocalApic::LocalApic(uint32_t apic_id, bool bootstrap, InterruptRouter* router, TimerService* timers,
                     std::function<void()> kick)
    : apic_id_(apic_id), bootstrap_(bootstrap), router_(router), timers_(timers), kick_(std::move(kick)) {
  absl::MutexLock lock(&mu_);
  ResetRegistersLocked();  // no timer is running yet, nothing to cancel
  wait_for_sipi_ = !bootstrap_;  // APs come out of power-on waiting for a SIPI, as on hardware
}

LocalApic::~LocalApic() {
  TimerService::TimerId stale;
  {
    absl::MutexLock lock(&mu_);
    destroying_ = true;  // a callback already running will not re-arm
    stale = StopTimerLocked();
  }
  if (stale != 0) timers_->Cancel(stale);  // waits for a running callback
}

// ---------------------------------------------------------------------------------------------------
// MMIO

void LocalApic::MmioRead(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (offset >= platform::kLapicSize) return;
  const uint32_t reg = static_cast<uint32_t>(offset) & 0xff0;
  const uint32_t byte = static_cast<uint32_t>(offset) & 0xf;
  absl::MutexLock lock(&mu_);
  const uint32_t value = ReadRegisterLocked(reg);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint32_t pos = byte + static_cast<uint32_t>(i);
    if (pos < 4) data[i] = static_cast<uint8_t>(value >> (8 * pos));
  }
}

void LocalApic::MmioWrite(uint64_t offset, std::span<const uint8_t> data) {
  std::optional<ApicMessage> to_send;
  std::optional<uint8_t> eoi_broadcast;
  TimerService::TimerId stale = 0;
  {
    absl::MutexLock lock(&mu_);
    if (offset >= platform::kLapicSize || data.size() != 4 || (offset & 0xf) != 0) {
      ++anomalies_;
      const uint32_t slot = static_cast<uint32_t>(std::min<uint64_t>(offset, platform::kLapicSize - 1)) >> 4;
      if (!logged_.test(slot)) {
        logged_.set(slot);
        LOG_WARN("lapic %u: ignored %zu-byte write at offset %#x (registers take aligned 32-bit writes)",
                 apic_id_, data.size(), offset);
      }
      return;
    }
    stale = WriteRegisterLocked(static_cast<uint32_t>(offset), static_cast<uint32_t>(LoadLe(data)), &to_send,
                                &eoi_broadcast);
  }
  // Outside mu_: see the lock order in the header.
  if (stale != 0) timers_->Cancel(stale);
  if (to_send) router_->Deliver(*to_send);
  if (eoi_broadcast) router_->BroadcastEoi(*eoi_broadcast);
}

uint32_t LocalApic::ReadRegisterLocked(uint32_t reg) {
  if (reg >= apic::kIsrBase && reg < apic::kIsrBase + 0x80) return isr_.Word((reg - apic::kIsrBase) >> 4);
  if (reg >= apic::kTmrBase && reg < apic::kTmrBase + 0x80) return tmr_.Word((reg - apic::kTmrBase) >> 4);
  if (reg >= apic::kIrrBase && reg < apic::kIrrBase + 0x80) return irr_.Word((reg - apic::kIrrBase) >> 4);
  switch (reg) {
    case apic::kId: return apic_id_ << 24;
    case apic::kVersion: return apic::kVersionValue;
    case apic::kTpr: return tpr_;
    case apic::kApr: return AprLocked();
    case apic::kPpr: return PprLocked();
    case apic::kEoi: return 0;  // write-only
    case apic::kRrd: return 0;  // remote read is not supported (and was dropped after the 82489DX)
    case apic::kLdr: return ldr_;
    case apic::kDfr: return dfr_;
    case apic::kSvr: return svr_;
    case apic::kEsr: return esr_;
    case apic::kIcrLow: return icr_low_;  // delivery status (bit 12) always 0: sends complete at once
    case apic::kIcrHigh: return icr_high_;
    case apic::kLvtTimer: return lvt_timer_;
    case apic::kLvtThermal: return lvt_thermal_;
    case apic::kLvtPerf: return lvt_perf_;
    case apic::kLvtLint0: return lvt_lint0_;
    case apic::kLvtLint1: return lvt_lint1_;
    case apic::kLvtError: return lvt_error_;
    case apic::kTimerInitialCount: return timer_initial_;
    case apic::kTimerCurrentCount: return TimerCurrentCountLocked();
    case apic::kTimerDivide: return timer_divide_;
    default:
      NoteUnimplementedLocked(reg, /*write=*/false);
      return 0;
  }
}

TimerService::TimerId LocalApic::WriteRegisterLocked(uint32_t reg, uint32_t value,
                                                     std::optional<ApicMessage>* to_send,
                                                     std::optional<uint8_t>* eoi_broadcast) {
  const bool enabled = SoftwareEnabledLocked();
  switch (reg) {
    case apic::kTpr: tpr_ = value & 0xff; return 0;
    case apic::kEoi: *eoi_broadcast = EoiLocked(); return 0;
    case apic::kLdr: ldr_ = value & 0xff00'0000; return 0;
    case apic::kDfr: dfr_ = (value & 0xf000'0000) | 0x0fff'ffff; return 0;
    case apic::kSvr: WriteSvrLocked(value); return 0;
    case apic::kEsr:
      // Write-then-read: a write latches the errors seen since the previous write into the readable value.
      esr_ = esr_pending_;
      esr_pending_ = 0;
      return 0;
    case apic::kIcrLow:
      icr_low_ = value & apic::kIcrLowWritable;
      *to_send = BuildIcrMessageLocked();
      return 0;
    case apic::kIcrHigh: icr_high_ = value & apic::kIcrHighWritable; return 0;
    case apic::kLvtTimer: lvt_timer_ = Lvt(value, apic::kLvtTimerWritable, enabled); return 0;
    case apic::kLvtThermal: lvt_thermal_ = Lvt(value, apic::kLvtThermalPerfWritable, enabled); return 0;
    case apic::kLvtPerf: lvt_perf_ = Lvt(value, apic::kLvtThermalPerfWritable, enabled); return 0;
    case apic::kLvtLint0: lvt_lint0_ = Lvt(value, apic::kLvtLintWritable, enabled); return 0;
    case apic::kLvtLint1: lvt_lint1_ = Lvt(value, apic::kLvtLintWritable, enabled); return 0;
    case apic::kLvtError: lvt_error_ = Lvt(value, apic::kLvtErrorWritable, enabled); return 0;
    case apic::kTimerInitialCount:
      timer_initial_ = value;
      return StartTimerLocked();
    case apic::kTimerDivide: {
      const uint64_t old_divisor = TimerDivisorLocked();
      timer_divide_ = value & apic::kTimerDivideWritable;
      const uint64_t new_divisor = TimerDivisorLocked();
      if (!timer_running_ || old_divisor == new_divisor) return 0;
      // Keep the remaining tick count; only the tick length changes.
      const auto now = Clock::now();
      const int64_t remaining_ns = TimerLeftNsLocked(now);
      const uint64_t remaining_ticks = static_cast<uint64_t>(remaining_ns) / old_divisor;
      timer_deadline_ = now + std::chrono::nanoseconds(remaining_ticks * new_divisor);
      const TimerService::TimerId stale = timer_id_;
      ++timer_generation_;
      ScheduleTimerLocked();
      return stale;
    }
    case apic::kId:
      // The id is fixed: the router addresses this APIC by it (and so does the MADT).
    case apic::kVersion:
    case apic::kApr:
    case apic::kPpr:
    case apic::kRrd:
    case apic::kTimerCurrentCount:
      NoteUnimplementedLocked(reg, /*write=*/true);
      return 0;
    default:
      // ISR/TMR/IRR are read-only too; everything else is not implemented.
      NoteUnimplementedLocked(reg, /*write=*/true);
      return 0;
  }
}

void LocalApic::WriteSvrLocked(uint32_t value) {
  svr_ = value & apic::kSvrWritable;
  if (!SoftwareEnabledLocked()) {
    // Software disable masks every LVT entry; IRR and ISR are kept.
    for (uint32_t* lvt : {&lvt_timer_, &lvt_thermal_, &lvt_perf_, &lvt_lint0_, &lvt_lint1_, &lvt_error_}) {
      *lvt |= apic::kLvtMasked;
    }
  }
}

std::optional<ApicMessage> LocalApic::BuildIcrMessageLocked() {
  ApicMessage msg;
  msg.vector = apic::VectorOf(icr_low_);
  msg.destination_mode = (icr_low_ & (1u << 11)) ? DestinationMode::kLogical : DestinationMode::kPhysical;
  msg.destination = static_cast<uint8_t>(icr_high_ >> 24);
  msg.shorthand = static_cast<DestinationShorthand>((icr_low_ >> 18) & 3);
  msg.level_triggered = (icr_low_ & apic::kIcrLevelTrigger) != 0;
  msg.level_assert = (icr_low_ & apic::kIcrLevelAssert) != 0;
  msg.source_apic_id = apic_id_;
  switch (apic::DeliveryModeBits(icr_low_)) {
    case 0: msg.delivery_mode = DeliveryMode::kFixed; break;
    case 1: msg.delivery_mode = DeliveryMode::kLowestPriority; break;
    case 2: msg.delivery_mode = DeliveryMode::kSmi; break;
    case 4: msg.delivery_mode = DeliveryMode::kNmi; break;
    case 5: msg.delivery_mode = DeliveryMode::kInit; break;
    case 6: msg.delivery_mode = DeliveryMode::kStartup; break;
    default:
      // 3 is reserved and ExtINT cannot be sent by an ICR.
      ++anomalies_;
      if (!std::exchange(icr_logged_, true)) {
        LOG_WARN("lapic %u: ICR write %#x with an invalid delivery mode, not sent", apic_id_, icr_low_);
      }
      return std::nullopt;
  }
  const bool vectored =
      msg.delivery_mode == DeliveryMode::kFixed || msg.delivery_mode == DeliveryMode::kLowestPriority;
  if (vectored && msg.vector < apic::kFirstLegalVector) {
    SignalErrorLocked(apic::kEsrSendIllegalVector);
    return std::nullopt;
  }
  return msg;
}

std::optional<uint8_t> LocalApic::EoiLocked() {
  const int vector = isr_.Highest();
  if (vector < 0) return std::nullopt;  // EOI without an in-service interrupt: nothing to do
  const auto v = static_cast<uint8_t>(vector);
  isr_.Clear(v);
  // Level-triggered interrupts (TMR set at acceptance) need the IOAPIC to clear its remote IRR.
  if (tmr_.Test(v)) return v;
  return std::nullopt;
}

absl::Status LocalApic::SetPvEoiMsr(uint64_t value) {
  constexpr uint64_t kReservedBits = 0x6;  // bits 1-2: the flag is a 4-byte aligned word; bit 0 enables
  if ((value & kReservedBits) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("MSR_KVM_PV_EOI_EN %#x: address not 4-byte aligned", value));
  }
  absl::MutexLock lock(&mu_);
  pv_eoi_msr_ = value;
  return absl::OkStatus();
}

uint64_t LocalApic::pv_eoi_msr() const {
  absl::MutexLock lock(&mu_);
  return pv_eoi_msr_;
}

std::optional<uint64_t> LocalApic::PvEoiFlagIfSkippable() const {
  constexpr uint64_t kEnabled = 1;
  absl::MutexLock lock(&mu_);
  if ((pv_eoi_msr_ & kEnabled) == 0 || irr_.Highest() >= 0) return std::nullopt;
  const int vector = isr_.Highest();
  if (vector < 0 || tmr_.Test(static_cast<uint8_t>(vector))) return std::nullopt;
  ApicVectorSet others = isr_;
  others.Clear(static_cast<uint8_t>(vector));
  if (others.Highest() >= 0) return std::nullopt;  // nested interrupts: each EOI must reach the APIC in order
  return pv_eoi_msr_ & ~kEnabled;
}

void LocalApic::PvEoiCompleted() {
  std::optional<uint8_t> eoi_broadcast;
  {
    absl::MutexLock lock(&mu_);
    eoi_broadcast = EoiLocked();
  }
  // Only an edge-triggered vector's flag is ever set, but TMR follows the latest acceptance of a vector.
  if (eoi_broadcast) router_->BroadcastEoi(*eoi_broadcast);
}

// ---------------------------------------------------------------------------------------------------
// Priorities

uint8_t LocalApic::PprLocked() const {
  const int isrv = std::max(isr_.Highest(), 0);
  if ((tpr_ & 0xf0) >= static_cast<uint32_t>(isrv & 0xf0)) return static_cast<uint8_t>(tpr_);
  return static_cast<uint8_t>(isrv & 0xf0);
}

uint8_t LocalApic::AprLocked() const {
  const uint32_t isrv = static_cast<uint32_t>(std::max(isr_.Highest(), 0)) & 0xf0;
  const uint32_t irrv = static_cast<uint32_t>(std::max(irr_.Highest(), 0)) & 0xf0;
  const uint32_t tpr_class = tpr_ & 0xf0;
  if (tpr_class >= irrv && tpr_class > isrv) return static_cast<uint8_t>(tpr_);
  return static_cast<uint8_t>(std::max({tpr_class, isrv, irrv}));
}

bool LocalApic::SoftwareEnabledLocked() const { return (svr_ & apic::kSvrSoftwareEnable) != 0; }

std::optional<uint8_t> LocalApic::PendingLocked() const {
  if (!SoftwareEnabledLocked()) return std::nullopt;
  const int vector = irr_.Highest();
  if (vector < 0) return std::nullopt;
  if (static_cast<uint32_t>(vector & 0xf0) <= (PprLocked() & 0xf0u)) return std::nullopt;
  return static_cast<uint8_t>(vector);
}

bool LocalApic::ExtIntPendingLocked() const {
  if (extint_message_) return true;
  return lint0_level_ && !apic::IsMasked(lvt_lint0_) &&
         apic::DeliveryModeBits(lvt_lint0_) == static_cast<uint32_t>(DeliveryMode::kExtInt);
}

bool LocalApic::MatchesDestination(DestinationMode mode, uint8_t destination) const {
  if (mode == DestinationMode::kPhysical) return destination == 0xff || destination == apic_id_;
  if (destination == 0xff) return true;  // broadcast in both logical models
  absl::MutexLock lock(&mu_);
  const auto logical_id = static_cast<uint8_t>(ldr_ >> 24);
  if ((dfr_ >> 28) == apic::kDfrFlat) return (logical_id & destination) != 0;
  if ((dfr_ >> 28) == apic::kDfrCluster) {
    // High nibble: cluster address; low nibble: a mask of up to four APICs in that cluster.
    return (logical_id >> 4) == (destination >> 4) && (logical_id & destination & 0x0f) != 0;
  }
  return false;  // a reserved model matches nothing
}

uint8_t LocalApic::ArbitrationPriority() const {
  absl::MutexLock lock(&mu_);
  return AprLocked();
}

bool LocalApic::SoftwareEnabled() const {
  absl::MutexLock lock(&mu_);
  return SoftwareEnabledLocked();
}

// ---------------------------------------------------------------------------------------------------
// Acceptance

bool LocalApic::RaiseLocked(uint8_t vector, bool level) {
  if (vector < apic::kFirstLegalVector) {
    SignalErrorLocked(apic::kEsrReceiveIllegalVector);
    return false;
  }
  irr_.Set(vector);
  tmr_.Assign(vector, level);
  return true;
}

void LocalApic::SignalErrorLocked(uint32_t esr_bits) {
  ++anomalies_;
  esr_pending_ |= esr_bits;
  const uint8_t vector = apic::VectorOf(lvt_error_);
  // An illegal error vector is dropped rather than reported again (that would loop).
  if (!apic::IsMasked(lvt_error_) && vector >= apic::kFirstLegalVector) {
    irr_.Set(vector);
    tmr_.Clear(vector);
  }
}

void LocalApic::Accept(const ApicMessage& msg) {
  bool kick = false;
  {
    absl::MutexLock lock(&mu_);
    switch (msg.delivery_mode) {
      case DeliveryMode::kFixed:
      case DeliveryMode::kLowestPriority:
        if (msg.level_triggered && !msg.level_assert) break;  // de-assert means nothing for fixed
        if (!SoftwareEnabledLocked()) {
          ++anomalies_;  // a software-disabled APIC does not accept fixed interrupts
          break;
        }
        kick = RaiseLocked(msg.vector, msg.level_triggered);
        break;
      case DeliveryMode::kNmi:
        nmi_pending_ = true;
        kick = true;
        break;
      case DeliveryMode::kInit:
        // INIT level de-assert only re-synchronises arbitration ids on old APICs: nothing to do.
        if (msg.level_triggered && !msg.level_assert) break;
        init_pending_ = true;
        wait_for_sipi_ = true;  // armed now: the SIPI may arrive before the vCPU thread takes the INIT
        sipi_vector_.reset();
        kick = true;
        break;
      case DeliveryMode::kStartup:
        if (!wait_for_sipi_) break;  // e.g. the second SIPI of INIT-SIPI-SIPI: ignored, as hardware does
        wait_for_sipi_ = false;
        sipi_vector_ = msg.vector;
        kick = true;
        break;
      case DeliveryMode::kExtInt:
        extint_message_ = true;
        kick = true;
        break;
      case DeliveryMode::kSmi:
      default:
        ++anomalies_;
        if (!std::exchange(smi_logged_, true)) {
          LOG_WARN("lapic %u: SMI and unknown delivery modes are not emulated; message dropped", apic_id_);
        }
        break;
    }
  }
  if (kick && kick_) kick_();
}

void LocalApic::SetLint0(bool level) { SetLint(Lint::k0, level); }
void LocalApic::SetLint1(bool level) { SetLint(Lint::k1, level); }

void LocalApic::SetLint(Lint pin, bool level) {
  bool kick = false;
  {
    absl::MutexLock lock(&mu_);
    bool& current = pin == Lint::k0 ? lint0_level_ : lint1_level_;
    const bool old = current;
    current = level;
    kick = LintEdgeLocked(pin, old, level);
  }
  if (kick && kick_) kick_();
}

bool LocalApic::LintEdgeLocked(Lint pin, bool old_level, bool new_level) {
  const uint32_t lvt = pin == Lint::k0 ? lvt_lint0_ : lvt_lint1_;
  const bool rising = !old_level && new_level;
  if (!rising || apic::IsMasked(lvt)) return false;
  switch (apic::DeliveryModeBits(lvt)) {
    case static_cast<uint32_t>(DeliveryMode::kFixed):
      // Treated as edge-triggered; level-triggered LINT fixed mode (remote IRR) is not used by PCs.
      return RaiseLocked(apic::VectorOf(lvt), false);
    case static_cast<uint32_t>(DeliveryMode::kNmi):
      nmi_pending_ = true;
      return true;
    case static_cast<uint32_t>(DeliveryMode::kExtInt):
      return true;  // ExtIntPending() follows the level; the vCPU must notice it
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------------
// vCPU side

std::optional<uint8_t> LocalApic::PendingInterrupt() const {
  absl::MutexLock lock(&mu_);
  return PendingLocked();
}

uint8_t LocalApic::AcknowledgeInterrupt() {
  absl::MutexLock lock(&mu_);
  const std::optional<uint8_t> vector = PendingLocked();
  if (!vector) return apic::VectorOf(svr_);  // spurious interrupt: ISR untouched, no EOI expected
  irr_.Clear(*vector);
  isr_.Set(*vector);
  return *vector;
}

bool LocalApic::TakeNmi() {
  absl::MutexLock lock(&mu_);
  return std::exchange(nmi_pending_, false);
}

bool LocalApic::TakeInit() {
  TimerService::TimerId stale = 0;
  {
    absl::MutexLock lock(&mu_);
    if (!init_pending_) return false;
    init_pending_ = false;
    nmi_pending_ = false;
    extint_message_ = false;
    stale = ResetRegistersLocked();  // INIT resets the APIC too; wait_for_sipi_ / sipi_vector_ stay
  }
  if (stale != 0) timers_->Cancel(stale);
  return true;
}

std::optional<uint8_t> LocalApic::TakeStartup() {
  absl::MutexLock lock(&mu_);
  if (init_pending_) return std::nullopt;  // the INIT that armed this SIPI must be processed first
  return std::exchange(sipi_vector_, std::nullopt);
}

bool LocalApic::ExtIntPending() const {
  absl::MutexLock lock(&mu_);
  return ExtIntPendingLocked();
}

void LocalApic::AcknowledgeExtInt() {
  absl::MutexLock lock(&mu_);
  extint_message_ = false;
}

bool LocalApic::HasWork() const {
  absl::MutexLock lock(&mu_);
  return HasWorkLocked();
}

bool LocalApic::HasWorkLocked() const {
  return PendingLocked().has_value() || nmi_pending_ || init_pending_ || sipi_vector_.has_value() ||
         ExtIntPendingLocked();
}

bool LocalApic::HasNonMaskableWork() const {
  absl::MutexLock lock(&mu_);
  return nmi_pending_ || init_pending_ || sipi_vector_.has_value();
}

void LocalApic::Reset() {
  TimerService::TimerId stale = 0;
  {
    absl::MutexLock lock(&mu_);
    stale = ResetRegistersLocked();
    nmi_pending_ = false;
    init_pending_ = false;
    wait_for_sipi_ = !bootstrap_;
    sipi_vector_.reset();
    extint_message_ = false;
  }
  if (stale != 0) timers_->Cancel(stale);
}

TimerService::TimerId LocalApic::ResetRegistersLocked() {
  tpr_ = 0;
  ldr_ = 0;
  dfr_ = apic::kDfrReset;
  svr_ = apic::kSvrReset;
  esr_ = 0;
  esr_pending_ = 0;
  icr_low_ = 0;
  icr_high_ = 0;
  lvt_timer_ = apic::kLvtReset;
  lvt_thermal_ = apic::kLvtReset;
  lvt_perf_ = apic::kLvtReset;
  lvt_lint0_ = bootstrap_ ? apic::kLvtLint0VirtualWire : apic::kLvtReset;
  lvt_lint1_ = apic::kLvtReset;
  lvt_error_ = apic::kLvtReset;
  timer_initial_ = 0;
  timer_divide_ = 0;
  irr_.ClearAll();
  isr_.ClearAll();
  tmr_.ClearAll();
  pv_eoi_msr_ = 0;  // as KVM's vCPU reset: the guest enables PV EOI again as each CPU comes up
  return StopTimerLocked();
}

LocalApicState LocalApic::SaveState() const {
  absl::MutexLock lock(&mu_);
  LocalApicState s{};
  s.tpr = tpr_;
  s.ldr = ldr_;
  s.dfr = dfr_;
  s.svr = svr_;
  s.esr = esr_;
  s.esr_pending = esr_pending_;
  s.icr_low = icr_low_;
  s.icr_high = icr_high_;
  s.lvt_timer = lvt_timer_;
  s.lvt_thermal = lvt_thermal_;
  s.lvt_perf = lvt_perf_;
  s.lvt_lint0 = lvt_lint0_;
  s.lvt_lint1 = lvt_lint1_;
  s.lvt_error = lvt_error_;
  s.timer_initial = timer_initial_;
  s.timer_divide = timer_divide_;
  for (unsigned i = 0; i < 8; ++i) {
    s.irr[i] = irr_.Word(i);
    s.isr[i] = isr_.Word(i);
    s.tmr[i] = tmr_.Word(i);
  }
  s.timer_running = timer_running_;
  s.timer_remaining_ns = timer_running_ ? TimerLeftNsLocked(Clock::now()) : 0;
  s.lint0_level = lint0_level_;
  s.lint1_level = lint1_level_;
  s.extint_message = extint_message_;
  s.nmi_pending = nmi_pending_;
  s.init_pending = init_pending_;
  s.wait_for_sipi = wait_for_sipi_;
  s.sipi_vector = sipi_vector_ ? *sipi_vector_ : -1;
  s.pv_eoi_msr = pv_eoi_msr_;
  return s;
}

void LocalApic::LoadState(const LocalApicState& s) {
  TimerService::TimerId stale = 0;
  bool kick = false;
  {
    absl::MutexLock lock(&mu_);
    stale = StopTimerLocked();
    tpr_ = s.tpr;
    ldr_ = s.ldr;
    dfr_ = s.dfr;
    svr_ = s.svr;
    esr_ = s.esr;
    esr_pending_ = s.esr_pending;
    icr_low_ = s.icr_low;
    icr_high_ = s.icr_high;
    lvt_timer_ = s.lvt_timer;
    lvt_thermal_ = s.lvt_thermal;
    lvt_perf_ = s.lvt_perf;
    lvt_lint0_ = s.lvt_lint0;
    lvt_lint1_ = s.lvt_lint1;
    lvt_error_ = s.lvt_error;
    timer_initial_ = s.timer_initial;
    timer_divide_ = s.timer_divide;
    for (unsigned i = 0; i < 8; ++i) {
      irr_.SetWord(i, s.irr[i]);
      isr_.SetWord(i, s.isr[i]);
      tmr_.SetWord(i, s.tmr[i]);
    }
    lint0_level_ = s.lint0_level != 0;
    lint1_level_ = s.lint1_level != 0;
    extint_message_ = s.extint_message != 0;
    nmi_pending_ = s.nmi_pending != 0;
    init_pending_ = s.init_pending != 0;
    wait_for_sipi_ = s.wait_for_sipi != 0;
    sipi_vector_.reset();
    if (s.sipi_vector >= 0 && s.sipi_vector <= 0xff) sipi_vector_ = static_cast<uint8_t>(s.sipi_vector);
    pv_eoi_msr_ = s.pv_eoi_msr;
    if (s.timer_running != 0 && timer_initial_ != 0) {
      timer_running_ = true;
      timer_deadline_ = Clock::now() + std::chrono::nanoseconds(std::max<int64_t>(0, s.timer_remaining_ns));
      ScheduleTimerLocked();
    }
    kick = HasWorkLocked();
  }
  if (stale != 0) timers_->Cancel(stale);
  if (kick && kick_) kick_();
}

uint64_t LocalApic::anomalies() const {
  absl::MutexLock lock(&mu_);
  return anomalies_;
}

void LocalApic::NoteUnimplementedLocked(uint32_t reg, bool write) {
  ++anomalies_;
  const uint32_t slot = (reg >> 4) & 0xff;
  if (logged_.test(slot)) return;
  logged_.set(slot);
  LOG_INFO("lapic %u: %s of unimplemented or read-only register %#x ignored", apic_id_, write ? "write" : "read",
           reg);
}

// ---------------------------------------------------------------------------------------------------
// Timer

uint64_t LocalApic::TimerDivisorLocked() const {
  // DCR bits 0, 1 and 3 form a 3-bit code: 0..6 divide by 2^(code+1), 7 divides by 1.
  const uint32_t code = (timer_divide_ & 3) | ((timer_divide_ >> 1) & 4);
  return code == 7 ? 1 : (2ULL << code);
}

std::chrono::nanoseconds LocalApic::TimerPeriodicIntervalLocked() const {
  return std::max<std::chrono::nanoseconds>(
      std::chrono::nanoseconds(uint64_t{timer_initial_} * TimerDivisorLocked()), kMinPeriodicInterval);
}

int64_t LocalApic::TimerLeftNsLocked(Clock::time_point now) const {
  return std::max<int64_t>(0, (timer_deadline_ - now).count());
}

uint32_t LocalApic::TimerCurrentCountLocked() const {
  if (!timer_running_) return 0;
  const auto now = Clock::now();
  uint64_t remaining_ns;
  if (now < timer_deadline_) {
    remaining_ns = static_cast<uint64_t>((timer_deadline_ - now).count());
  } else if (lvt_timer_ & apic::kLvtTimerPeriodic) {
    // Expired, and the timer thread has not reloaded it yet (it may be starved): a periodic count
    // has already restarted on hardware, so report where it is in the current period.
    const auto period = TimerPeriodicIntervalLocked();
    remaining_ns = static_cast<uint64_t>((period - (now - timer_deadline_) % period).count());
  } else {
    return 0;
  }
  // A clamped periodic interval may exceed the programmed one: never report more than the initial count.
  return static_cast<uint32_t>(std::min<uint64_t>(remaining_ns / TimerDivisorLocked(), timer_initial_));
}

TimerService::TimerId LocalApic::StopTimerLocked() {
  timer_running_ = false;
  ++timer_generation_;  // a callback already queued or running becomes stale
  return std::exchange(timer_id_, 0);
}

TimerService::TimerId LocalApic::StartTimerLocked() {
  const TimerService::TimerId stale = StopTimerLocked();
  if (timer_initial_ == 0) return stale;  // writing 0 stops the timer
  timer_running_ = true;
  timer_deadline_ = Clock::now() + std::chrono::nanoseconds(uint64_t{timer_initial_} * TimerDivisorLocked());
  ScheduleTimerLocked();
  return stale;
}

void LocalApic::ScheduleTimerLocked() {
  if (destroying_) return;
  const uint64_t generation = timer_generation_;
  timer_id_ = timers_->Schedule(timer_deadline_, [this, generation] { OnTimerExpired(generation); });
}

void LocalApic::OnTimerExpired(uint64_t generation) {
  bool kick = false;
  {
    absl::MutexLock lock(&mu_);
    if (generation != timer_generation_ || !timer_running_ || destroying_) return;  // stale
    if (!apic::IsMasked(lvt_timer_)) kick = RaiseLocked(apic::VectorOf(lvt_timer_), false);
    // The mode in force at expiry decides whether the count reloads (the timer keeps counting while
    // masked, as hardware does).
    if (lvt_timer_ & apic::kLvtTimerPeriodic) {
      const auto period = TimerPeriodicIntervalLocked();
      const auto now = Clock::now();
      timer_deadline_ += period;
      // Far behind (host stalled): skip the missed periods instead of firing a burst.
      if (timer_deadline_ <= now) timer_deadline_ = now + period;
      ScheduleTimerLocked();
    } else {
      timer_running_ = false;
      timer_id_ = 0;
    }
  }
  if (kick && kick_) kick_();
}

}  // namespace coalesce
