#include "guest.h"
#include "layout.h"

extern const uint8_t ap_trampoline_start[], ap_trampoline_end[];

static volatile uint32_t cpus_online = 1; /* the BSP */
static volatile uint32_t online[GUEST_MAX_CPUS];
static volatile uint32_t reported_id[GUEST_MAX_CPUS];
static ap_main_fn volatile ap_main;

unsigned smp_online_count(void) { return atomic_load(&cpus_online); }
bool smp_cpu_online(unsigned cpu) { return cpu < GUEST_MAX_CPUS && online[cpu]; }
unsigned smp_reported_apic_id(unsigned cpu) { return cpu < GUEST_MAX_CPUS ? reported_id[cpu] : ~0u; }

NORETURN void cpu_idle_forever(void) {
  for (;;) safe_halt();
}

void rt_ap_entry(void);
void rt_ap_entry(void) {
  cpu_tables_load();
  unsigned cpu = this_cpu();
  reported_id[cpu] = lapic_id();
  lapic_enable();
  if (atomic_xchg(&online[cpu], 1) != 0)
    guest_fail("CPU %u started twice (a second SIPI restarted a running AP?)", cpu);
  atomic_inc(&cpus_online);
  if (ap_main) ap_main(cpu);
  cpu_idle_forever();
}

/* Copies the trampoline and sets what APs run. */
static void prepare_aps(ap_main_fn fn) {
  online[0] = 1;
  reported_id[0] = lapic_id();
  ap_main = fn;
  size_t size = (size_t)(ap_trampoline_end - ap_trampoline_start);
  memcpy((void *)GUEST_TRAMPOLINE_ADDR, ap_trampoline_start, size);
  compiler_barrier();
  tsc_hz(); /* calibrate before any AP could ask */
}

/* INIT assert, then INIT de-assert (as Linux does), to APs first..last; 10 ms; SIPI; 200 us; SIPI. */
static void init_sipi_sipi(unsigned first, unsigned last) {
  for (unsigned id = first; id <= last; id++) lapic_send_ipi_or_fail(id, ICR_INIT | ICR_LEVEL | ICR_ASSERT);
  for (unsigned id = first; id <= last; id++) lapic_send_ipi_or_fail(id, ICR_INIT | ICR_LEVEL);
  pit_wait_us(10000);
  for (int round = 0; round < 2; round++) {
    for (unsigned id = first; id <= last; id++)
      lapic_send_ipi_or_fail(id, ICR_STARTUP | (GUEST_TRAMPOLINE_ADDR >> 12));
    delay_us(200);
  }
}

unsigned smp_start_aps(unsigned ncpus, ap_main_fn fn, uint32_t timeout_ms) {
  prepare_aps(fn);
  if (ncpus <= 1) return smp_online_count();
  init_sipi_sipi(1, ncpus - 1);
  WAIT_UNTIL(smp_online_count() >= ncpus, timeout_ms);
  return smp_online_count();
}

bool smp_start_one(unsigned id, ap_main_fn fn, uint32_t timeout_ms) {
  prepare_aps(fn);
  init_sipi_sipi(id, id);
  return WAIT_UNTIL(smp_cpu_online(id), timeout_ms);
}

unsigned smp_boot_all(ap_main_fn fn) {
  unsigned n = fw_cfg_cpu_count();
  lapic_enable();
  if (lapic_id() != 0) guest_fail_code(GUEST_EXIT_ENV, "BSP has APIC id %u, expected 0", lapic_id());
  /* 60 s by default: on KVM an AP checks in within milliseconds, but an edge's AP under the nested CI VM's TCG
   * faults its first pages in over the DSM and once took over 10 s; the bound only decides how long a real
   * failure takes to report. */
  unsigned up = smp_start_aps(n, fn, cmdline_uint("ap_timeout_ms", 60000));
  if (up != n) {
    for (unsigned c = 0; c < n; c++)
      if (!smp_cpu_online(c)) printf("%s: CPU %u did not check in\n", guest_name, c);
    guest_fail_code(GUEST_EXIT_TIMEOUT, "%u of %u CPUs online after INIT-SIPI-SIPI", up, n);
  }
  return n;
}
