#include "hypervisor/kvm/vcpu_exit.h"

namespace coalesce {

VcpuExit DecodeExit(kvm_run* run) {
  auto* base = reinterpret_cast<uint8_t*>(run);
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      size_t bytes = static_cast<size_t>(run->io.size) * run->io.count;
      uint8_t* data = base + run->io.data_offset;
      if (run->io.direction == KVM_EXIT_IO_IN) {
        return exit::IoIn{run->io.port, run->io.size, run->io.count, {data, bytes}};
      }
      return exit::IoOut{run->io.port, run->io.size, run->io.count, {data, bytes}};
    }
    case KVM_EXIT_MMIO: {
      uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;
      if (run->mmio.is_write) return exit::MmioWrite{run->mmio.phys_addr, {run->mmio.data, len}};
      return exit::MmioRead{run->mmio.phys_addr, {run->mmio.data, len}};
    }
    case KVM_EXIT_HLT:
      return exit::Hlt{};
    case KVM_EXIT_SHUTDOWN:
      return exit::Shutdown{};
    case KVM_EXIT_INTR:
      return exit::Interrupted{};
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return exit::IrqWindowOpen{};
    case KVM_EXIT_INTERNAL_ERROR: {
      uint32_t n = run->internal.ndata;
      if (n > 16) n = 16;
      exit::InternalError e{run->internal.suberror, n, {}};
      for (uint32_t i = 0; i < n; ++i) e.data[i] = run->internal.data[i];
      return e;
    }
    case KVM_EXIT_FAIL_ENTRY:
      return exit::FailEntry{run->fail_entry.hardware_entry_failure_reason, run->fail_entry.cpu};
    case KVM_EXIT_SYSTEM_EVENT:
      return exit::SystemEvent{run->system_event.type};
    case KVM_EXIT_DEBUG:
      return exit::Debug{run->debug.arch};
    case KVM_EXIT_X86_RDMSR:
      return exit::MsrRead{run->msr.index, &run->msr.data, &run->msr.error};
    case KVM_EXIT_X86_WRMSR:
      return exit::MsrWrite{run->msr.index, run->msr.data, &run->msr.error};
    default:
      return exit::Unknown{run->exit_reason};
  }
}

const char* ExitKindNameByIndex(size_t index) {
  static constexpr const char* kNames[] = {
      "io_in",          "io_out",       "mmio_read",   "mmio_write", "hlt",
      "shutdown",       "interrupted",  "irq_window",  "internal_error",
      "fail_entry",     "system_event", "debug",       "msr_read",
      "msr_write",      "unknown"};
  static_assert(std::size(kNames) == kExitKinds);
  return index < kExitKinds ? kNames[index] : "?";
}

const char* ExitKindName(const VcpuExit& e) { return ExitKindNameByIndex(e.index()); }

}  // namespace coalesce
