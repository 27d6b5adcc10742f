#include "hypervisor/irq/pic.h"

#include <utility>

#include "hypervisor/base/log.h"

namespace coalesce {
namespace {

constexpr unsigned kCascadeInput = 2;
// IRQ 0, 1, 2 (timer, keyboard, cascade) and 8, 13 (RTC, FPU) are always edge-triggered on a PC.
constexpr uint8_t kMasterElcrMask = 0xf8;
constexpr uint8_t kSlaveElcrMask = 0xde;
constexpr unsigned kSpuriousInput = 7;

}  // namespace

Pic8259Pair::Pic8259Pair() : master_(true, kMasterElcrMask), slave_(false, kSlaveElcrMask) {}

void Pic8259Pair::SetOutputCallback(OutputCallback callback) {
  absl::MutexLock lock(&mu_);
  callback_ = std::move(callback);
}

void Pic8259Pair::SetIrq(uint32_t irq, bool level) {
  absl::MutexLock lock(&mu_);
  if (irq >= 16 || irq == kCascadeInput) {
    ++anomalies_;
    if (!std::exchange(anomaly_logged_, true)) LOG_WARN("pic: SetIrq(%u) ignored: no such input", irq);
    return;
  }
  if (irq < 8) {
    master_.SetInput(irq, level);
  } else {
    slave_.SetInput(irq - 8, level);
  }
  UpdateLocked();
}

bool Pic8259Pair::OutputHigh() const {
  absl::MutexLock lock(&mu_);
  return output_;
}

uint8_t Pic8259Pair::Acknowledge() {
  absl::MutexLock lock(&mu_);
  uint8_t vector;
  const int irq = master_.HighestRequest();
  if (irq < 0) {
    ++spurious_;
    vector = master_.VectorFor(kSpuriousInput);
  } else {
    master_.Acknowledge(static_cast<unsigned>(irq));
    if (static_cast<unsigned>(irq) == kCascadeInput) {
      const int slave_irq = slave_.HighestRequest();
      if (slave_irq < 0) {
        ++spurious_;
        vector = slave_.VectorFor(kSpuriousInput);
      } else {
        slave_.Acknowledge(static_cast<unsigned>(slave_irq));
        vector = slave_.VectorFor(static_cast<unsigned>(slave_irq));
      }
    } else {
      vector = master_.VectorFor(static_cast<unsigned>(irq));
    }
  }
  UpdateLocked();
  return vector;
}

void Pic8259Pair::Reset() {
  absl::MutexLock lock(&mu_);
  master_.Reset();
  slave_.Reset();
  UpdateLocked();
}

void Pic8259Pair::UpdateLocked() {
  master_.SetInput(kCascadeInput, slave_.HighestRequest() >= 0);
  const bool output = master_.HighestRequest() >= 0;
  if (output == output_) return;
  output_ = output;
  if (callback_) callback_(output);
}

void Pic8259Pair::PortRead(Window window, uint64_t offset, std::span<uint8_t> data) {
  absl::MutexLock lock(&mu_);
  // Wider accesses read consecutive ports; bytes past the window read as an open bus.
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < 2 ? ReadPortLocked(window, offset + i) : 0xff;
  }
  UpdateLocked();  // a poll read acknowledges
}

void Pic8259Pair::PortWrite(Window window, uint64_t offset, std::span<const uint8_t> data) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < data.size() && offset + i < 2; ++i) WritePortLocked(window, offset + i, data[i]);
  UpdateLocked();
}

uint8_t Pic8259Pair::ReadPortLocked(Window window, uint64_t port) {
  switch (window) {
    case Window::kMaster: return port == 0 ? master_.ReadCommand() : master_.ReadData();
    case Window::kSlave: return port == 0 ? slave_.ReadCommand() : slave_.ReadData();
    case Window::kElcr: return port == 0 ? master_.elcr() : slave_.elcr();
  }
  return 0xff;
}

void Pic8259Pair::WritePortLocked(Window window, uint64_t port, uint8_t value) {
  switch (window) {
    case Window::kMaster:
      port == 0 ? master_.WriteCommand(value) : master_.WriteData(value);
      break;
    case Window::kSlave:
      port == 0 ? slave_.WriteCommand(value) : slave_.WriteData(value);
      break;
    case Window::kElcr:
      port == 0 ? master_.WriteElcr(value) : slave_.WriteElcr(value);
      break;
  }
}

uint64_t Pic8259Pair::spurious_acknowledges() const {
  absl::MutexLock lock(&mu_);
  return spurious_;
}

uint64_t Pic8259Pair::anomalies() const {
  absl::MutexLock lock(&mu_);
  return anomalies_;
}

}  // namespace coalesce
