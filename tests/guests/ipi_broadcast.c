/* Destination shorthands. From CPU 0: all-excluding-self (0x70), all-including-self (0x71), self (0x72).
 * From the last CPU (kicked by 0x73): all-excluding-self (0x74) and all-including-self (0x75). After every
 * send each CPU must receive exactly once if it is covered by the shorthand and never otherwise.
 * rounds=<n> sends of each (default 20). */
#include "guest.h"

const char guest_name[] = "ipi_broadcast";

enum { K_BSP_OTHERS, K_BSP_ALL, K_BSP_SELF, K_AP_OTHERS, K_AP_ALL, K_COUNT };
static const uint8_t vectors[K_COUNT] = {0x70, 0x71, 0x72, 0x74, 0x75};
static const char *const kind_names[K_COUNT] = {"CPU 0 all-excluding-self", "CPU 0 all-including-self",
                                                "CPU 0 self", "AP all-excluding-self", "AP all-including-self"};
#define VEC_AP_GO 0x73

static volatile uint32_t count[K_COUNT][GUEST_MAX_CPUS];
static unsigned ncpus, ap_sender;

static void on_broadcast(struct irq_frame *f) {
  for (unsigned k = 0; k < K_COUNT; k++)
    if (vectors[k] == f->vector) count[k][this_cpu()]++;
  lapic_eoi();
}

static void on_ap_go(struct irq_frame *f) {
  lapic_send_ipi_or_fail(0, ICR_DEST_OTHERS | vectors[K_AP_OTHERS]);
  lapic_send_ipi_or_fail(0, ICR_DEST_ALL | vectors[K_AP_ALL]);
  lapic_eoi();
}

/* Whether a CPU is covered by shorthand k (senders: CPU 0 for BSP kinds, ap_sender for AP kinds). */
static bool covered(unsigned k, unsigned cpu) {
  switch (k) {
    case K_BSP_OTHERS: return cpu != 0;
    case K_BSP_ALL: return true;
    case K_BSP_SELF: return cpu == 0;
    case K_AP_OTHERS: return cpu != ap_sender;
    default: return true;
  }
}

static bool reached(unsigned k, uint32_t r) {
  for (unsigned c = 0; c < ncpus; c++)
    if (covered(k, c) && count[k][c] < r) return false;
  return true;
}

static void verify(unsigned k, uint32_t r) {
  for (unsigned c = 0; c < ncpus; c++) {
    uint32_t want = covered(k, c) ? r : 0;
    CHECK_MSG(count[k][c] == want, "%s: CPU %u received %u, expected %u after %u sends", kind_names[k], c,
              count[k][c], want, r);
  }
}

void guest_main(void) {
  uint32_t rounds = cmdline_uint("rounds", 20);
  for (unsigned k = 0; k < K_COUNT; k++) irq_set_handler(vectors[k], on_broadcast);
  irq_set_handler(VEC_AP_GO, on_ap_go);
  ncpus = smp_boot_all(0);
  ap_sender = ncpus - 1;
  irq_enable();

  static const uint32_t bsp_shorthand[3] = {ICR_DEST_OTHERS, ICR_DEST_ALL, ICR_DEST_SELF};
  for (uint32_t r = 1; r <= rounds; r++) {
    for (unsigned k = K_BSP_OTHERS; k <= K_BSP_SELF; k++) {
      lapic_send_ipi_or_fail(0, bsp_shorthand[k] | vectors[k]);
      WAIT_OR_FAIL(reached(k, r), DELIVERY_TIMEOUT_MS, "%s send %u not delivered everywhere", kind_names[k], r);
    }
  }
  delay_us(20000); /* duplicates or strays would have arrived by now */
  for (unsigned k = K_BSP_OTHERS; k <= K_BSP_SELF; k++) verify(k, rounds);
  printf("ipi_broadcast: CPU 0 shorthands: %u sends each, exact on %u CPU(s)\n", rounds, ncpus);

  if (ncpus > 1) {
    for (uint32_t r = 1; r <= rounds; r++) {
      lapic_send_fixed(ap_sender, VEC_AP_GO);
      WAIT_OR_FAIL(reached(K_AP_OTHERS, r) && reached(K_AP_ALL, r), DELIVERY_TIMEOUT_MS,
                   "round %u: broadcast from CPU %u not delivered everywhere", r, ap_sender);
    }
    delay_us(20000);
    verify(K_AP_OTHERS, rounds);
    verify(K_AP_ALL, rounds);
    printf("ipi_broadcast: CPU %u shorthands: %u sends each, exact\n", ap_sender, rounds);
  }
  guest_pass();
}
