/* TSC agreement between CPUs, the way Linux's tsc_sync check looks at it: CPU 0 and each other CPU in turn
 * exchange timestamps through shared memory, rounds=<k> times (default 200). Per round CPU 0 reads t0 and
 * publishes it; the other CPU sees it, reads t1 and publishes that; CPU 0 sees t1 and reads t2. If both
 * TSCs count the same time, t0 <= t1 <= t2 always (causality): a TSC behind by d shows as t1 < t0 once d
 * exceeds the exchange's latency, one ahead as t1 > t2. Any such "warp" fails the test; the smallest round
 * trip and the largest warp margin seen are printed. Across nodes (vCPUs on edge hosts) this checks the TSC
 * offsets the home node hands out: every exchange crosses the DSM. */
#include "guest.h"

const char guest_name[] = "tsc_sync";

static volatile uint64_t stamp[3] __attribute__((aligned(64)));  /* t0, t1, generation */
static volatile uint32_t partner, go, finished;
static uint32_t rounds;

static void ap_main(unsigned cpu) {
  uint64_t seen = 0;
  for (;;) {
    while (atomic_load(&partner) != cpu) {
      if (atomic_load(&finished)) return;
      cpu_relax();
    }
    uint64_t gen = __atomic_load_n(&stamp[2], __ATOMIC_ACQUIRE);
    if (gen == seen || (gen & 1)) { cpu_relax(); continue; }  /* odd: our own answer */
    seen = gen;
    __atomic_store_n(&stamp[1], rdtsc(), __ATOMIC_RELEASE);
    __atomic_store_n(&stamp[2], gen + 1, __ATOMIC_RELEASE);  /* odd: t1 is there */
  }
}

void guest_main(void) {
  rounds = cmdline_uint("rounds", 200);
  unsigned n = smp_boot_all(ap_main);
  uint64_t gen = 0;
  for (unsigned cpu = 1; cpu < n; cpu++) {
    atomic_store(&partner, cpu);
    uint64_t best_rtt = ~0ull;
    int64_t best_offset = 0;  /* t1 - (t0 + t2) / 2 of the fastest round: the skew, +- half its round trip */
    int64_t worst_margin = INT64_MAX;  /* min over rounds of min(t1 - t0, t2 - t1): negative = warp */
    for (uint32_t r = 0; r < rounds; r++) {
      uint64_t t0 = rdtsc();
      __atomic_store_n(&stamp[0], t0, __ATOMIC_RELEASE);
      gen += 2;  /* requests are even, answers odd */
      __atomic_store_n(&stamp[2], gen, __ATOMIC_RELEASE);
      WAIT_OR_FAIL(__atomic_load_n(&stamp[2], __ATOMIC_ACQUIRE) == gen + 1, 20000u,
                   "cpu %u did not answer round %u", cpu, r);
      uint64_t t2 = rdtsc();
      uint64_t t1 = __atomic_load_n(&stamp[1], __ATOMIC_ACQUIRE);
      int64_t a = (int64_t)(t1 - t0), b = (int64_t)(t2 - t1);
      CHECK_MSG(a >= 0 && b >= 0, "TSC warp between cpu 0 and cpu %u in round %u: t0=%lu t1=%lu t2=%lu", cpu, r,
                t0, t1, t2);
      if (t2 - t0 < best_rtt) {
        best_rtt = t2 - t0;
        best_offset = (int64_t)(t1 - t0) - (int64_t)((t2 - t0) / 2);
      }
      int64_t m = a < b ? a : b;
      if (m < worst_margin) worst_margin = m;
    }
    printf("tsc_sync: cpu 0 <-> cpu %u: %u rounds, no warp; best round trip %lu cycles (%lu us), "
           "smallest margin %ld cycles, skew estimate %ld +- %lu cycles\n", cpu, rounds, best_rtt,
           tsc_to_us(best_rtt), worst_margin, best_offset, best_rtt / 2);
  }
  atomic_store(&partner, 0xffffffffu);
  atomic_store(&finished, 1);
  guest_pass();
}
