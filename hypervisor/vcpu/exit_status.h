// Exit statuses of `coalesce run`. Odd values belong to the guest's isa-debug-exit ((V << 1) | 1, as in
// QEMU); the VMM's own outcomes are even.
#pragma once

namespace coalesce::exit_status {

inline constexpr int kPowerOff = 0;       // ACPI S5 or equivalent clean power-off
inline constexpr int kUsage = 2;          // bad command line, profile or input file
inline constexpr int kGuestReset = 4;     // the guest asked for a reset (reboot) and --on-reset=exit
inline constexpr int kGuestCrashed = 6;   // triple fault, KVM internal error, unhandled instruction
inline constexpr int kHostFailure = 8;    // the VMM or a node failed (lost peer, KVM error)

}  // namespace coalesce::exit_status
