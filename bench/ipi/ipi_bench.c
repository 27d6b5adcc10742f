/* IPI round-trip benchmark: CPU 0 sends a fixed IPI to CPU 1, whose handler sends one straight back;
 * each round trip is timed with RDTSC from before the ICR write to the moment CPU 0 sees the answer.
 * rounds=<n> timed round trips (default 500) after warmup=<n> untimed ones (default 20); timeout_ms=<n> bounds
 * each (default 5000).
 * Prints one line: "ipi_bench: rounds=... median=... mean=... min=... p90=... p99=... max=... tsc_khz=..."
 * (cycles), then "ipi_bench: PASS". */
#include "guest.h"

const char guest_name[] = "ipi_bench";

#define VEC_PING 0x40
#define VEC_PONG 0x41
#define MAX_ROUNDS 20000

static volatile uint32_t pongs;
static uint64_t samples[MAX_ROUNDS];

static void on_ping(struct irq_frame *f) {
  lapic_send_fixed(0, VEC_PONG);
  lapic_eoi();
}

static void on_pong(struct irq_frame *f) {
  pongs++;
  lapic_eoi();
}

/* Shell sort (Ciura gaps): few instructions matter when every guest instruction may be emulated. */
static void sort(uint64_t *a, uint32_t n) {
  static const uint32_t gaps[] = {1750, 701, 301, 132, 57, 23, 10, 4, 1};
  for (unsigned g = 0; g < ARRAY_SIZE(gaps); g++) {
    uint32_t gap = gaps[g];
    for (uint32_t i = gap; i < n; i++) {
      uint64_t v = a[i];
      uint32_t j = i;
      for (; j >= gap && a[j - gap] > v; j -= gap) a[j] = a[j - gap];
      a[j] = v;
    }
  }
}

static uint64_t percentile(const uint64_t *sorted, uint32_t n, uint32_t pct) {
  uint32_t i = (uint32_t)(((uint64_t)n * pct + 99) / 100);
  return sorted[i ? i - 1 : 0];
}

void guest_main(void) {
  uint32_t rounds = cmdline_uint("rounds", 500), warmup = cmdline_uint("warmup", 20);
  uint32_t timeout_ms = cmdline_uint("timeout_ms", 5000);  /* per round trip: slow emulated links need more */
  CHECK_MSG(rounds >= 1 && rounds <= MAX_ROUNDS, "rounds=%u outside 1..%u", rounds, MAX_ROUNDS);
  irq_set_handler(VEC_PING, on_ping);
  irq_set_handler(VEC_PONG, on_pong);
  unsigned n = smp_boot_all(0);
  CHECK_MSG(n >= 2, "needs at least 2 CPUs, has %u", n);
  irq_enable();
  for (uint32_t i = 0; i < warmup + rounds; i++) {
    uint64_t t0 = rdtsc();
    lapic_send_fixed(1, VEC_PING);
    WAIT_OR_FAIL(pongs == i + 1, timeout_ms, "round trip %u: no answer from CPU 1 in %u ms", i, timeout_ms);
    uint64_t t1 = rdtsc();
    if (i >= warmup) samples[i - warmup] = t1 - t0;
  }
  uint64_t sum = 0;
  for (uint32_t i = 0; i < rounds; i++) sum += samples[i];
  sort(samples, rounds);
  printf("ipi_bench: rounds=%u median=%lu mean=%lu min=%lu p90=%lu p99=%lu max=%lu tsc_khz=%lu\n", rounds,
         percentile(samples, rounds, 50), sum / rounds, samples[0], percentile(samples, rounds, 90),
         percentile(samples, rounds, 99), samples[rounds - 1], tsc_hz() / 1000);
  guest_pass();
}
