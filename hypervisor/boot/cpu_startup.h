// Initial vCPU states: the bootstrap processor's entry into the loaded kernel, and an application
// processor's state after INIT + SIPI. The register values are computed by pure functions (unit-tested
// without /dev/kvm); the Apply* functions read the vCPU's current special registers (to keep what KVM
// owns, such as the APIC base MSR) and write the result through VcpuFd.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "absl/status/status.h"
#include "hypervisor/boot/boot_entry.h"
#include "hypervisor/kvm/vcpu_fd.h"

namespace coalesce {

// Writes `entry` into the vCPU: segments from the GDT descriptors WriteBootGdt() writes, CR0/CR4/EFER/CR3
// for the mode, GDTR, an empty IDT (a fault before the kernel loads its own shuts the guest down instead of
// running garbage), RFLAGS 0x2 and the general registers of `entry`. A20 needs nothing: KVM never masks it.
absl::Status ApplyBootEntry(const BootEntry& entry, VcpuFd& vcpu);

// The INIT + SIPI state of an application processor: real mode, CS selector = vector << 8,
// CS base = vector << 12, IP = 0, every other register as after INIT.
absl::Status ApplyStartupState(uint8_t sipi_vector, VcpuFd& vcpu);

// The pure halves of the above. `current` supplies what is kept (apic_base).
kvm_sregs BootEntrySregs(const BootEntry& entry, const kvm_sregs& current);
kvm_regs BootEntryRegs(const BootEntry& entry);
kvm_sregs StartupSregs(uint8_t sipi_vector, const kvm_sregs& current);
kvm_regs StartupRegs();

}  // namespace coalesce
