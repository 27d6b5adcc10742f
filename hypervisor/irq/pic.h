// The PC's cascaded pair of 8259A PICs: master at platform::kPicMasterPort (ISA IRQ 0-7), slave at
// platform::kPicSlavePort (IRQ 8-15) wired into the master's IR2, and the two ELCR bytes at
// platform::kPicElcrPort that switch inputs to level mode. The master's INTR output goes to the BSP's
// LINT0 (ExtINT): the machine installs an output callback that calls LocalApic::SetLint0, and the vCPU
// loop calls Acknowledge() (INTA) when LocalApic::ExtIntPending() says so.
//
// Thread model and lock order: every entry point takes mu_. The output callback runs WITH mu_ held, so
// level changes reach the callback in the order they happened; it must not call back into this PIC
// (LocalApic::SetLint0 does not: it takes only the LocalApic's lock, then kicks the vCPU). So the order is
// Pic8259Pair::mu_ -> LocalApic::mu_, and nothing ever takes them in the other order.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/bus/bus_device.h"
#include "hypervisor/irq/pic_chip.h"

namespace coalesce {

class Pic8259Pair final {
 public:
  using OutputCallback = std::function<void(bool high)>;

  Pic8259Pair();
  Pic8259Pair(const Pic8259Pair&) = delete;
  Pic8259Pair& operator=(const Pic8259Pair&) = delete;

  // Installs the INTR-output listener (before the machine runs). It is called with the new level
  // whenever the output changes, with the PIC's lock held (see the header comment).
  void SetOutputCallback(OutputCallback callback);

  // Drives ISA IRQ `irq` (0-15). IRQ2 is the cascade and cannot be driven; bad numbers are counted.
  void SetIrq(uint32_t irq, bool level);
  // INTR: the master has a request the CPU should take.
  [[nodiscard]] bool OutputHigh() const;
  // INTA cycle: returns the vector and moves the request to ISR. With no request left (the line dropped
  // or got masked since INTR rose) it returns the spurious vector IRQ7 (master) or IRQ15 (slave, then the
  // master's IR2 is in service), without setting the spurious input's ISR bit, as the 8259A does.
  uint8_t Acknowledge();
  // Power-on state.
  void Reset();

  // Port windows to register on the PIO bus: 2 ports each at kPicMasterPort, kPicSlavePort, kPicElcrPort.
  BusDevice& master_ports() { return master_window_; }
  BusDevice& slave_ports() { return slave_window_; }
  BusDevice& elcr_ports() { return elcr_window_; }

  [[nodiscard]] uint64_t spurious_acknowledges() const;
  [[nodiscard]] uint64_t anomalies() const;

 private:
  enum class Window : uint8_t { kMaster, kSlave, kElcr };

  // Adapts one 2-port window to the bus; the pair does the work.
  class PortWindow final : public BusDevice {
   public:
    PortWindow(Pic8259Pair* pair, Window window, std::string_view name)
        : pair_(pair), window_(window), name_(name) {}
    void Read(uint64_t offset, std::span<uint8_t> data) override { pair_->PortRead(window_, offset, data); }
    void Write(uint64_t offset, std::span<const uint8_t> data) override {
      pair_->PortWrite(window_, offset, data);
    }
    [[nodiscard]] std::string_view name() const override { return name_; }

   private:
    Pic8259Pair* const pair_;
    const Window window_;
    const std::string_view name_;
  };

  void PortRead(Window window, uint64_t offset, std::span<uint8_t> data);
  void PortWrite(Window window, uint64_t offset, std::span<const uint8_t> data);
  uint8_t ReadPortLocked(Window window, uint64_t port) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WritePortLocked(Window window, uint64_t port, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Feeds the slave's output into the master's IR2 and reports a change of the master's output.
  void UpdateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  Pic8259Chip master_ ABSL_GUARDED_BY(mu_);
  Pic8259Chip slave_ ABSL_GUARDED_BY(mu_);
  bool output_ ABSL_GUARDED_BY(mu_) = false;
  OutputCallback callback_ ABSL_GUARDED_BY(mu_);
  uint64_t spurious_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t anomalies_ ABSL_GUARDED_BY(mu_) = 0;
  bool anomaly_logged_ ABSL_GUARDED_BY(mu_) = false;

  PortWindow master_window_{this, Window::kMaster, "pic-master"};
  PortWindow slave_window_{this, Window::kSlave, "pic-slave"};
  PortWindow elcr_window_{this, Window::kElcr, "pic-elcr"};
};

}  // namespace coalesce
