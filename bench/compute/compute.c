/* Compute-bound guest with little sharing: every CPU runs work=<k> rounds of an integer hash over its own
 * 4 KiB of data (its own page: no page is shared between CPUs while they compute), then reports. Prints the
 * total throughput in rounds per second of wall time (TSC). */
#include "guest.h"

const char guest_name[] = "compute";

static uint64_t data[GUEST_MAX_CPUS][512] __attribute__((aligned(4096)));
static volatile uint64_t result[GUEST_MAX_CPUS * 8] __attribute__((aligned(64)));
static volatile uint32_t start, done;
static uint32_t rounds;

static void work(unsigned cpu) {
  uint64_t* d = data[cpu];
  for (unsigned i = 0; i < 512; i++) d[i] = i * 0x9e3779b97f4a7c15ull + cpu;
  while (!atomic_load(&start)) cpu_relax();
  uint64_t h = cpu;
  for (uint32_t r = 0; r < rounds; r++) {
    for (unsigned i = 0; i < 512; i++) {
      h ^= d[i];
      h *= 0xff51afd7ed558ccdull;
      h ^= h >> 33;
      d[i] = h;
    }
  }
  result[cpu * 8] = h;
  atomic_inc(&done);
}

static volatile uint32_t ticks[GUEST_MAX_CPUS];

static void on_tick(struct irq_frame *frame) {
  (void)frame;
  ticks[this_cpu()]++;
  lapic_eoi();
}

/* tick_hz=N: a periodic LAPIC timer interrupt at N Hz on every CPU during the work, as a guest kernel's
 * scheduler tick would be: measures what interrupt delivery costs the guest (bench/compute --tick-hz). */
static void start_ticks(void) {
  uint32_t hz = cmdline_uint("tick_hz", 0);
  if (hz == 0) return;
  lapic_timer_start(0x40, (uint32_t)(1000000000ull / hz), LAPIC_TIMER_PERIODIC, LAPIC_TIMER_DIV1);
  irq_enable();
}

static void ap_main(unsigned cpu) {
  start_ticks();
  work(cpu);
}

void guest_main(void) {
  rounds = cmdline_uint("work", 2000);
  irq_set_handler(0x40, on_tick);
  unsigned n = smp_boot_all(ap_main);
  start_ticks();
  uint64_t t0 = rdtsc();
  atomic_store(&start, 1);
  work(0);
  WAIT_OR_FAIL(atomic_load(&done) == n, 600000u, "only %u of %u CPUs finished", done, n);
  uint64_t us = tsc_to_us(rdtsc() - t0);
  printf("compute: cpus=%u rounds_per_cpu=%u wall_us=%lu throughput_rounds_per_s=%lu ticks_cpu0=%u\n", n, rounds,
         us, us ? (uint64_t)n * rounds * 1000000u / us : 0, ticks[0]);
  guest_pass();
}
