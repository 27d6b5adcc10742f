/* Spinlock counter: every CPU adds 1 to a shared counter iterations=<k> times (default 20000) under an xchg
 * spinlock, with a plain (non-atomic) read-modify-write inside; the total must be exactly N * K, and no two
 * CPUs may ever be inside the critical section together. Reused by the multi-node tests, where the lock
 * and the counter bounce between nodes through the DSM. */
#include "guest.h"

const char guest_name[] = "spinlock";

/* Lock and counter share a cache line and page, like most real locks and the data they protect. */
static struct {
  spinlock_t lock;
  volatile uint32_t counter;
  volatile uint32_t inside;
} shared __attribute__((aligned(64)));

static volatile uint32_t start, done, overlaps;
static volatile uint32_t contributed[GUEST_MAX_CPUS];
static uint32_t iterations;

static void work(unsigned cpu) {
  while (!atomic_load(&start)) cpu_relax();
  for (uint32_t i = 0; i < iterations; i++) {
    spin_lock(&shared.lock);
    if (shared.inside) overlaps++;
    shared.inside = cpu + 1;
    shared.counter = shared.counter + 1;
    if (shared.inside != cpu + 1) overlaps++;
    shared.inside = 0;
    spin_unlock(&shared.lock);
    contributed[cpu]++;
  }
  atomic_inc(&done);
}

static void ap_main(unsigned cpu) { work(cpu); }

void guest_main(void) {
  iterations = cmdline_uint("iterations", 20000);
  uint32_t timeout_s = cmdline_uint("timeout_s", 120);
  unsigned n = smp_boot_all(ap_main);
  uint64_t t0 = rdtsc();
  atomic_store(&start, 1);
  work(0);
  WAIT_OR_FAIL(atomic_load(&done) == n, timeout_s * 1000u, "only %u of %u CPUs finished; counter %u", done, n,
               shared.counter);
  uint64_t us = tsc_to_us(rdtsc() - t0);
  uint32_t want = n * iterations;
  printf("spinlock: %u CPUs x %u iterations: counter %u (expected %u) in %lu ms\n", n, iterations,
         shared.counter, want, us / 1000);
  for (unsigned c = 0; c < n; c++)
    CHECK_MSG(contributed[c] == iterations, "CPU %u did %u iterations", c, contributed[c]);
  CHECK_MSG(overlaps == 0, "%u critical-section overlaps: the lock did not exclude", overlaps);
  CHECK_MSG(shared.counter == want, "counter %u, expected %u", shared.counter, want);
  guest_pass();
}
