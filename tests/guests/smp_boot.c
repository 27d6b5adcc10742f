/* SMP bring-up: INIT-SIPI-SIPI every AP; each checks in once from its own stack slot with its own APIC id;
 * the count must equal FW_CFG_NB_CPUS. */
#include "guest.h"

const char guest_name[] = "smp_boot";

static volatile uint32_t checked_in[GUEST_MAX_CPUS];
static volatile uint32_t arrivals;

static void ap_check_in(unsigned cpu) {
  /* The AP's view must agree with the BSP's: stack slot == LAPIC ID, segment state as loaded. */
  checked_in[cpu] = lapic_id() + 1;
  atomic_inc(&arrivals);
}

void guest_main(void) {
  unsigned n = fw_cfg_cpu_count();
  printf("smp_boot: fw_cfg reports %u CPU(s)\n", n);
  unsigned up = smp_boot_all(ap_check_in);
  WAIT_OR_FAIL(atomic_load(&arrivals) == n - 1, 5000, "only %u of %u APs ran their main", arrivals, n - 1);
  for (unsigned cpu = 1; cpu < n; cpu++) {
    CHECK_MSG(smp_cpu_online(cpu), "CPU %u never checked in", cpu);
    CHECK_MSG(checked_in[cpu] == cpu + 1, "CPU %u (stack slot) reads APIC id %u", cpu, checked_in[cpu] - 1);
    CHECK_MSG(smp_reported_apic_id(cpu) == cpu, "CPU %u reported APIC id %u", cpu, smp_reported_apic_id(cpu));
  }
  /* Nobody beyond the advertised count may have started. */
  for (unsigned cpu = n; cpu < GUEST_MAX_CPUS; cpu++) CHECK_MSG(!smp_cpu_online(cpu), "unexpected CPU %u", cpu);
  /* Let stragglers (a restarted AP, an extra SIPI) show up before the final count. */
  delay_us(50000);
  CHECK_MSG(smp_online_count() == n, "%u CPUs online, fw_cfg says %u", smp_online_count(), n);
  printf("smp_boot: %u/%u CPUs online (APIC ids 0..%u)\n", up, n, n - 1);
  guest_pass();
}
