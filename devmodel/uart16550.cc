#include "devmodel/uart16550.h"

#include <algorithm>

namespace coalesce {
namespace {

// Register offsets (DLAB selects the divisor latch at 0 and 1).
constexpr uint64_t kRbrThrDll = 0;
constexpr uint64_t kIerDlm = 1;
constexpr uint64_t kIirFcr = 2;
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

constexpr uint8_t kIerRxData = 0x01;
constexpr uint8_t kIerThre = 0x02;
constexpr uint8_t kIerLineStatus = 0x04;
constexpr uint8_t kIerModemStatus = 0x08;

constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirModemStatus = 0x00;
constexpr uint8_t kIirThre = 0x02;
constexpr uint8_t kIirRxData = 0x04;
constexpr uint8_t kIirLineStatus = 0x06;
constexpr uint8_t kIirCharTimeout = 0x0c;
constexpr uint8_t kIirFifoEnabled = 0xc0;

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;
constexpr uint8_t kFcrTriggerMask = 0xc0;

constexpr uint8_t kLcrDlab = 0x80;

constexpr uint8_t kMcrDtr = 0x01;
constexpr uint8_t kMcrRts = 0x02;
constexpr uint8_t kMcrOut1 = 0x04;
constexpr uint8_t kMcrOut2 = 0x08;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMcrWritable = 0x1f;

constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrOverrun = 0x02;
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;

constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrRi = 0x40;
constexpr uint8_t kMsrDcd = 0x80;
constexpr uint8_t kMsrDeltaCts = 0x01;
constexpr uint8_t kMsrDeltaDsr = 0x02;
constexpr uint8_t kMsrTrailingRi = 0x04;
constexpr uint8_t kMsrDeltaDcd = 0x08;

}  // namespace

Uart16550::Uart16550(IrqSink* irq_sink, uint32_t irq, OutputSink output)
    : irq_sink_(irq_sink), irq_(irq), output_(std::move(output)) {}

void Uart16550::Read(uint64_t offset, std::span<uint8_t> data) {
  absl::MutexLock lock(&mu_);
  // A wider access on ISA is a run of byte accesses at consecutive ports.
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < kSize ? ReadRegister(offset + i) : 0xff;
  }
  UpdateIrq();
}

void Uart16550::Write(uint64_t offset, std::span<const uint8_t> data) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i < kSize) WriteRegister(offset + i, data[i]);
  }
  UpdateIrq();
}

void Uart16550::ReceiveBytes(std::span<const uint8_t> bytes) {
  absl::MutexLock lock(&mu_);
  if (mcr_ & kMcrLoop) {
    // In loopback the receiver listens to the transmitter only; the line is disconnected.
    dropped_input_ += bytes.size();
    return;
  }
  size_t room = kHostQueueCapacity - std::min(rx_.size(), kHostQueueCapacity);
  size_t take = std::min(room, bytes.size());
  rx_.insert(rx_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(take));
  if (take < bytes.size()) {
    dropped_input_ += bytes.size() - take;
    lsr_errors_ |= kLsrOverrun;
  }
  UpdateIrq();
}

uint64_t Uart16550::dropped_input_bytes() const {
  absl::MutexLock lock(&mu_);
  return dropped_input_;
}

uint8_t Uart16550::ReadRegister(uint64_t offset) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (offset) {
    case kRbrThrDll: {
      if (dlab) return dll_;
      if (rx_.empty()) return 0;
      uint8_t byte = rx_.front();
      rx_.pop_front();
      return byte;
    }
    case kIerDlm:
      return dlab ? dlm_ : ier_;
    case kIirFcr: {
      uint8_t id = PendingInterrupt();
      // Reading IIR acknowledges a THR-empty interrupt, but only when it is the one reported.
      if (id == kIirThre) thre_pending_ = false;
      return static_cast<uint8_t>(id | ((fcr_ & kFcrEnable) ? kIirFifoEnabled : 0));
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr: {
      uint8_t lsr = static_cast<uint8_t>(kLsrThre | kLsrTemt | lsr_errors_);
      if (!rx_.empty()) lsr |= kLsrDataReady;
      lsr_errors_ = 0;
      return lsr;
    }
    case kMsr: {
      uint8_t msr = static_cast<uint8_t>(ModemLines() | msr_deltas_);
      msr_deltas_ = 0;
      return msr;
    }
    case kScr:
      return scr_;
    default:
      return 0xff;
  }
}

void Uart16550::WriteRegister(uint64_t offset, uint8_t value) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (offset) {
    case kRbrThrDll:
      if (dlab) {
        dll_ = value;
      } else {
        Transmit(value);
      }
      return;
    case kIerDlm:
      if (dlab) {
        dlm_ = value;
        return;
      } else {
        uint8_t old = ier_;
        ier_ = value & 0x0f;
        // Enabling the THRE interrupt while THR is empty (it always is) raises it at once; Linux's 8250
        // driver probes for exactly this and otherwise marks the port buggy.
        if ((ier_ & kIerThre) && !(old & kIerThre)) thre_pending_ = true;
      }
      return;
    case kIirFcr:
      WriteFcr(value);
      return;
    case kLcr:
      lcr_ = value;
      return;
    case kMcr:
      WriteMcr(value);
      return;
    case kLsr:
    case kMsr:
      return;  // read-only (factory test writes are ignored)
    case kScr:
      scr_ = value;
      return;
    default:
      return;
  }
}

void Uart16550::Transmit(uint8_t byte) {
  if (mcr_ & kMcrLoop) {
    size_t window = (fcr_ & kFcrEnable) ? kFifoDepth : 1;
    if (rx_.size() >= window) {
      lsr_errors_ |= kLsrOverrun;
    } else {
      rx_.push_back(byte);
    }
  } else if (output_) {
    output_(byte);
  }
  // The byte left THR at once, so THR is empty again: that is a fresh THRE event.
  thre_pending_ = true;
}

void Uart16550::WriteFcr(uint8_t value) {
  const bool was_enabled = fcr_ & kFcrEnable;
  const bool enable = value & kFcrEnable;
  if (!enable) {
    fcr_ = 0;
    if (was_enabled) rx_.clear();
    return;
  }
  fcr_ = static_cast<uint8_t>(value & (kFcrEnable | kFcrTriggerMask));
  if (!was_enabled || (value & kFcrClearRx)) {
    // Clear what the receiver FIFO holds; bytes still queued from the host are "on the wire" and stay.
    size_t drop = std::min(rx_.size(), kFifoDepth);
    rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(drop));
  }
}

void Uart16550::WriteMcr(uint8_t value) {
  const uint8_t before = ModemLines();
  mcr_ = value & kMcrWritable;
  const uint8_t after = ModemLines();
  const uint8_t changed = before ^ after;
  if (changed & kMsrCts) msr_deltas_ |= kMsrDeltaCts;
  if (changed & kMsrDsr) msr_deltas_ |= kMsrDeltaDsr;
  if ((before & kMsrRi) && !(after & kMsrRi)) msr_deltas_ |= kMsrTrailingRi;
  if (changed & kMsrDcd) msr_deltas_ |= kMsrDeltaDcd;
}

uint8_t Uart16550::ModemLines() const {
  if (mcr_ & kMcrLoop) {
    uint8_t lines = 0;
    if (mcr_ & kMcrRts) lines |= kMsrCts;
    if (mcr_ & kMcrDtr) lines |= kMsrDsr;
    if (mcr_ & kMcrOut1) lines |= kMsrRi;
    if (mcr_ & kMcrOut2) lines |= kMsrDcd;
    return lines;
  }
  // The host side is always "connected and ready".
  return kMsrDcd | kMsrDsr | kMsrCts;
}

bool Uart16550::RxTriggerReached() const {
  if (!(fcr_ & kFcrEnable)) return !rx_.empty();
  static constexpr size_t kTriggerLevels[4] = {1, 4, 8, 14};
  return rx_.size() >= kTriggerLevels[(fcr_ & kFcrTriggerMask) >> 6];
}

uint8_t Uart16550::PendingInterrupt() const {
  if ((ier_ & kIerLineStatus) && lsr_errors_ != 0) return kIirLineStatus;
  if ((ier_ & kIerRxData) && !rx_.empty()) {
    // Below the trigger level the real part waits four character times before the timeout interrupt;
    // host input arrives in bursts, so report the timeout at once rather than run a timer.
    return RxTriggerReached() ? kIirRxData : kIirCharTimeout;
  }
  if ((ier_ & kIerThre) && thre_pending_) return kIirThre;
  if ((ier_ & kIerModemStatus) && msr_deltas_ != 0) return kIirModemStatus;
  return kIirNone;
}

void Uart16550::UpdateIrq() {
  // On a PC, OUT2 enables the UART's interrupt buffer; loopback forces OUT2's pin inactive.
  const bool gate = (mcr_ & kMcrOut2) && !(mcr_ & kMcrLoop);
  const bool level = gate && PendingInterrupt() != kIirNone;
  if (level == irq_level_) return;
  irq_level_ = level;
  irq_sink_->SetIrq(irq_, level);
}

}  // namespace coalesce
