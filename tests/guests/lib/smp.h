/* AP bring-up: INIT-SIPI-SIPI to APIC ids 1..n-1 (APIC id = vCPU index), 16-bit trampoline at 0x8000. */
#pragma once

#include "types.h"

typedef void (*ap_main_fn)(unsigned cpu);

/* Starts every AP of a `ncpus` machine. Each AP loads the CPU tables, enables its LAPIC, checks in and
 * calls fn(cpu) with interrupts off (fn may return: the AP then idles in sti;hlt, serving interrupts).
 * Waits up to `timeout_ms` for all check-ins; returns the number of CPUs online, BSP included. */
unsigned smp_start_aps(unsigned ncpus, ap_main_fn fn, uint32_t timeout_ms);
/* fw_cfg CPU count, start all APs, fail the guest unless every one checked in within ap_timeout_ms=<ms> of the
 * command line (default 10 s; slow emulated links between nodes need more). Returns the CPU count. */
unsigned smp_boot_all(ap_main_fn fn);
/* Starts the one AP `id` (INIT-SIPI-SIPI), e.g. a CPU plugged in while the guest runs; returns whether it
 * checked in within `timeout_ms`. */
bool smp_start_one(unsigned id, ap_main_fn fn, uint32_t timeout_ms);
unsigned smp_online_count(void);
bool smp_cpu_online(unsigned cpu);
unsigned smp_reported_apic_id(unsigned cpu); /* what the AP read from its own LAPIC ID register */
NORETURN void cpu_idle_forever(void);      /* sti; hlt loop */
