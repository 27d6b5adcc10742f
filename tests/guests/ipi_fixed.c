/* Fixed IPIs to each CPU. Phase 1: CPU 0 sends vector 0x50 to every CPU, itself included, rounds=<n>
 * times (default 50); each handler counts and every count must be exact. Phase 2: all-to-all, every CPU
 * sends vector 0x60 + <its id> to every other CPU (distinct vectors, so nothing may legitimately
 * coalesce); every target must see every sender once per round. */
#include "guest.h"

const char guest_name[] = "ipi_fixed";

#define VEC_FIXED 0x50
#define VEC_GO 0x51
#define VEC_FROM_BASE 0x60
#define MAX_SENDERS 32

static volatile uint32_t received[GUEST_MAX_CPUS];
static volatile uint32_t from[MAX_SENDERS][MAX_SENDERS]; /* [target][sender] */
static unsigned ncpus;

static void on_fixed(struct irq_frame *f) {
  received[this_cpu()]++;
  lapic_eoi();
}

static void send_to_all_others(unsigned self) {
  for (unsigned t = 0; t < ncpus; t++)
    if (t != self) lapic_send_fixed(t, (uint8_t)(VEC_FROM_BASE + self));
}

static void on_go(struct irq_frame *f) {
  send_to_all_others(this_cpu());
  lapic_eoi();
}

static void on_from(struct irq_frame *f) {
  from[this_cpu()][f->vector - VEC_FROM_BASE]++;
  lapic_eoi();
}

static bool all_received(uint32_t r) {
  for (unsigned c = 0; c < ncpus; c++)
    if (received[c] < r) return false;
  return true;
}

static bool all_from(uint32_t r) {
  for (unsigned t = 0; t < ncpus; t++)
    for (unsigned s = 0; s < ncpus; s++)
      if (t != s && from[t][s] < r) return false;
  return true;
}

void guest_main(void) {
  uint32_t rounds = cmdline_uint("rounds", 50);
  irq_set_handler(VEC_FIXED, on_fixed);
  irq_set_handler(VEC_GO, on_go);
  for (unsigned v = 0; v < MAX_SENDERS; v++) irq_set_handler((uint8_t)(VEC_FROM_BASE + v), on_from);
  ncpus = smp_boot_all(0);
  CHECK_MSG(ncpus <= MAX_SENDERS, "at most %u CPUs supported, have %u", MAX_SENDERS, ncpus);
  irq_enable();

  for (uint32_t r = 1; r <= rounds; r++) {
    for (unsigned c = 0; c < ncpus; c++) lapic_send_fixed(c, VEC_FIXED);
    WAIT_OR_FAIL(all_received(r), DELIVERY_TIMEOUT_MS, "phase 1 round %u: not every CPU got its IPI", r);
  }
  delay_us(20000);
  for (unsigned c = 0; c < ncpus; c++)
    CHECK_MSG(received[c] == rounds, "phase 1: CPU %u counted %u IPIs, %u sent", c, received[c], rounds);
  printf("ipi_fixed: phase 1: %u CPUs x %u fixed IPIs from CPU 0, all counted\n", ncpus, rounds);

  for (uint32_t r = 1; r <= rounds; r++) {
    for (unsigned c = 1; c < ncpus; c++) lapic_send_fixed(c, VEC_GO);
    send_to_all_others(0);
    WAIT_OR_FAIL(all_from(r), DELIVERY_TIMEOUT_MS, "phase 2 round %u: an all-to-all IPI went missing", r);
  }
  delay_us(20000);
  for (unsigned t = 0; t < ncpus; t++)
    for (unsigned s = 0; s < ncpus; s++) {
      uint32_t want = t == s ? 0 : rounds;
      CHECK_MSG(from[t][s] == want, "phase 2: CPU %u got %u IPIs from CPU %u, expected %u", t, from[t][s], s,
                want);
    }
  printf("ipi_fixed: phase 2: all-to-all, %u rounds, %u IPIs each counted once\n", rounds,
         rounds * ncpus * (ncpus - 1));
  guest_pass();
}
