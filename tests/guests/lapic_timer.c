/* LAPIC timer on every CPU.
 * Calibration: CPU 0 runs the timer (divide 16, masked one-shot) over 50 ms of TSC, itself PIT-calibrated.
 * Periodic: every CPU runs a 10 ms periodic timer (vector 0x80); ticks are counted over a 500 ms interval
 * measured by the PIT; each CPU's count must lie in [40%, 125%] of the nominal ~50 (loose: on a host that
 * emulates guest code a handler can take a millisecond, and the host may be busy).
 * One-shot: every CPU arms a 20 ms one-shot (vector 0x81); it must fire exactly once, not before 15 ms,
 * and leave the current count at 0. A masked one-shot must count down without interrupting. */
#include "guest.h"

const char guest_name[] = "lapic_timer";

#define VEC_PERIODIC 0x80
#define VEC_ONESHOT 0x81
#define VEC_START_PERIODIC 0x82
#define VEC_STOP 0x83
#define VEC_START_ONESHOT 0x84
#define PERIOD_US 10000
#define INTERVAL_US 500000
#define ONESHOT_US 20000

static uint32_t timer_hz; /* after the divide-by-16 */
static volatile uint32_t counting;
static volatile uint32_t ticks[GUEST_MAX_CPUS];
static volatile uint32_t oneshot_fired[GUEST_MAX_CPUS];
static volatile uint64_t oneshot_armed_at[GUEST_MAX_CPUS], oneshot_fired_at[GUEST_MAX_CPUS];
static volatile uint32_t oneshot_current_after[GUEST_MAX_CPUS];
static volatile uint32_t acks;

static uint32_t counts_for_us(uint32_t us) { return (uint32_t)((uint64_t)timer_hz * us / 1000000u); }

static void on_periodic(struct irq_frame *f) {
  if (counting) ticks[this_cpu()]++;
  lapic_eoi();
}

static void on_oneshot(struct irq_frame *f) {
  unsigned cpu = this_cpu();
  oneshot_fired_at[cpu] = rdtsc();
  oneshot_current_after[cpu] = lapic_timer_current();
  oneshot_fired[cpu]++;
  lapic_eoi();
}

static void start_periodic(void) {
  lapic_timer_start(VEC_PERIODIC, counts_for_us(PERIOD_US), LAPIC_TIMER_PERIODIC, LAPIC_TIMER_DIV16);
}

static void arm_oneshot(void) {
  unsigned cpu = this_cpu();
  oneshot_armed_at[cpu] = rdtsc();
  lapic_timer_start(VEC_ONESHOT, counts_for_us(ONESHOT_US), 0, LAPIC_TIMER_DIV16);
}

static void on_start_periodic(struct irq_frame *f) {
  start_periodic();
  atomic_inc(&acks);
  lapic_eoi();
}

static void on_stop(struct irq_frame *f) {
  lapic_timer_stop();
  atomic_inc(&acks);
  lapic_eoi();
}

static void on_start_oneshot(struct irq_frame *f) {
  arm_oneshot();
  atomic_inc(&acks);
  lapic_eoi();
}

static void kick_aps(unsigned n, uint8_t vector) {
  acks = 0;
  for (unsigned c = 1; c < n; c++) lapic_send_fixed(c, vector);
  WAIT_OR_FAIL(atomic_load(&acks) == n - 1, DELIVERY_TIMEOUT_MS, "only %u of %u APs acknowledged vector %#x", acks, n - 1,
               vector);
}

static void calibrate(void) {
  lapic_timer_start(VEC_ONESHOT, 0xffffffffu, LAPIC_LVT_MASKED, LAPIC_TIMER_DIV16);
  uint64_t t0 = rdtsc();
  delay_us(50000);
  uint32_t cur = lapic_timer_current();
  uint64_t t1 = rdtsc();
  lapic_timer_stop();
  uint32_t elapsed = 0xffffffffu - cur;
  CHECK_MSG(elapsed > 0, "LAPIC timer current count did not move (%#x)", cur);
  uint64_t hz = (uint64_t)elapsed * tsc_hz() / (t1 - t0);
  CHECK_MSG(hz >= 100000 && hz <= 1000000000ull, "LAPIC timer runs at %lu Hz after divide-by-16", hz);
  timer_hz = (uint32_t)hz;
  printf("lapic_timer: timer clock %u kHz after divide-by-16 (bus ~%u MHz); TSC %lu kHz\n", timer_hz / 1000,
         (uint32_t)(hz * 16 / 1000000u), tsc_hz() / 1000);
}

static void masked_oneshot(void) {
  uint32_t before = oneshot_fired[0];
  lapic_timer_start(VEC_ONESHOT, counts_for_us(1000), LAPIC_LVT_MASKED, LAPIC_TIMER_DIV16);
  delay_us(20000);
  CHECK_MSG(oneshot_fired[0] == before, "a masked one-shot timer raised an interrupt");
  CHECK_MSG(lapic_timer_current() == 0, "masked one-shot: current count %u after expiry, expected 0",
            lapic_timer_current());
  lapic_timer_stop();
}

void guest_main(void) {
  irq_set_handler(VEC_PERIODIC, on_periodic);
  irq_set_handler(VEC_ONESHOT, on_oneshot);
  irq_set_handler(VEC_START_PERIODIC, on_start_periodic);
  irq_set_handler(VEC_STOP, on_stop);
  irq_set_handler(VEC_START_ONESHOT, on_start_oneshot);
  unsigned n = smp_boot_all(0);
  calibrate();
  irq_enable();

  /* Periodic. */
  kick_aps(n, VEC_START_PERIODIC);
  start_periodic();
  delay_us(10000); /* every timer running before the window opens */
  counting = 1;
  uint64_t interval_us = pit_wait_us(INTERVAL_US);
  counting = 0;
  lapic_timer_stop();
  kick_aps(n, VEC_STOP);
  uint32_t nominal = (uint32_t)(interval_us / PERIOD_US);
  for (unsigned c = 0; c < n; c++) {
    printf("lapic_timer: CPU %u: %u periodic ticks of %u us in %lu ms (nominal %u)\n", c, ticks[c], PERIOD_US,
           interval_us / 1000, nominal);
    CHECK_MSG(ticks[c] >= nominal * 40 / 100 && ticks[c] <= nominal * 125 / 100,
              "CPU %u: %u periodic ticks, outside [%u, %u]", c, ticks[c], nominal * 40 / 100,
              nominal * 125 / 100);
  }
  uint32_t after_stop[GUEST_MAX_CPUS];
  for (unsigned c = 0; c < n; c++) after_stop[c] = ticks[c];
  counting = 1;
  delay_us(20000);
  counting = 0;
  for (unsigned c = 0; c < n; c++)
    CHECK_MSG(ticks[c] == after_stop[c], "CPU %u: periodic timer still ticking after stop", c);

  /* One-shot. */
  kick_aps(n, VEC_START_ONESHOT);
  arm_oneshot();
  for (unsigned c = 0; c < n; c++)
    WAIT_OR_FAIL(oneshot_fired[c] >= 1, DELIVERY_TIMEOUT_MS, "CPU %u: one-shot timer never fired", c);
  delay_us(3 * ONESHOT_US); /* a second expiry would show now */
  for (unsigned c = 0; c < n; c++) {
    uint64_t us = tsc_to_us(oneshot_fired_at[c] - oneshot_armed_at[c]);
    printf("lapic_timer: CPU %u: one-shot of %u us fired after %lu us\n", c, ONESHOT_US, us);
    CHECK_MSG(oneshot_fired[c] == 1, "CPU %u: one-shot fired %u times", c, oneshot_fired[c]);
    CHECK_MSG(us >= ONESHOT_US * 3 / 4, "CPU %u: one-shot fired early, after %lu us", c, us);
    CHECK_MSG(oneshot_current_after[c] == 0, "CPU %u: current count %u in the one-shot handler, expected 0",
              c, oneshot_current_after[c]);
  }
  masked_oneshot();
  guest_pass();
}
