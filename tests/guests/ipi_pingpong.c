/* IPI ping-pong: CPU 0 sends a fixed IPI to each other CPU in turn; that CPU's handler answers with a
 * fixed IPI back. rounds=<n> round trips per CPU (default 200); every one must complete. */
#include "guest.h"

const char guest_name[] = "ipi_pingpong";

#define VEC_PING 0x40
#define VEC_PONG 0x41

static volatile uint32_t pings[GUEST_MAX_CPUS];
static volatile uint32_t pongs;

static void on_ping(struct irq_frame *f) {
  pings[this_cpu()]++;
  lapic_send_fixed(0, VEC_PONG);
  lapic_eoi();
}

static void on_pong(struct irq_frame *f) {
  pongs++;
  lapic_eoi();
}

void guest_main(void) {
  uint32_t rounds = cmdline_uint("rounds", 200);
  irq_set_handler(VEC_PING, on_ping);
  irq_set_handler(VEC_PONG, on_pong);
  unsigned n = smp_boot_all(0);
  CHECK_MSG(n >= 2, "needs at least 2 CPUs, has %u", n);
  irq_enable();
  for (unsigned cpu = 1; cpu < n; cpu++) {
    uint64_t start = rdtsc();
    for (uint32_t r = 0; r < rounds; r++) {
      uint32_t want = pongs + 1;
      lapic_send_fixed(cpu, VEC_PING);
      WAIT_OR_FAIL(pongs == want, DELIVERY_TIMEOUT_MS, "round %u with CPU %u: no pong (pings seen %u, pongs %u)", r, cpu,
                   pings[cpu], pongs);
    }
    uint64_t cycles = rdtsc() - start;
    CHECK_MSG(pings[cpu] == rounds, "CPU %u saw %u pings, %u sent", cpu, pings[cpu], rounds);
    printf("ipi_pingpong: CPU 0 <-> CPU %u: %u round trips, mean %lu cycles (%lu us)\n", cpu, rounds,
           cycles / rounds, tsc_to_us(cycles) / rounds);
  }
  delay_us(20000);
  CHECK_MSG(pongs == rounds * (n - 1), "%u pongs, expected %u", pongs, rounds * (n - 1));
  CHECK(pings[0] == 0);
  guest_pass();
}
