/* NMIs through the ICR (delivery mode NMI), handled on vector 2.
 * 1. CPU 0 sends NMIs to itself with IF=0: each must arrive (NMIs ignore IF).
 * 2. CPU 0 sends NMIs to each AP, which sits in "cli; hlt": only an NMI can wake it.
 * 3. Latching: an NMI sent to an AP while it is still inside its NMI handler must not nest, and must be
 *    delivered once the handler returns with iretq (the CPU holds one NMI while NMIs are blocked).
 * 4. Echo: each AP answers an NMI with an NMI to CPU 0.
 * rounds=<n> of phases 1, 2 and 4 (default 20); counts must be exact. */
#include "guest.h"

const char guest_name[] = "nmi";

static volatile uint32_t nmis[GUEST_MAX_CPUS];
static volatile uint32_t echo;
static volatile uint32_t hold[GUEST_MAX_CPUS]; /* the AP's handler spins while set */
static volatile uint32_t nested[GUEST_MAX_CPUS];
static volatile uint32_t in_handler[GUEST_MAX_CPUS];

static void on_nmi(struct irq_frame *f) {
  unsigned cpu = this_cpu();
  if (in_handler[cpu]) nested[cpu]++;
  in_handler[cpu] = 1;
  nmis[cpu]++;
  if (cpu != 0 && echo) lapic_send_nmi(0);
  while (hold[cpu]) cpu_relax();
  in_handler[cpu] = 0;
}

static void ap_main(unsigned cpu) {
  for (;;) __asm__ volatile("cli; hlt" ::: "memory");
}

void guest_main(void) {
  uint32_t rounds = cmdline_uint("rounds", 20);
  irq_set_handler(2, on_nmi);
  unsigned n = smp_boot_all(ap_main);
  irq_disable();

  for (uint32_t r = 1; r <= rounds; r++) {
    lapic_send_nmi(0);
    WAIT_OR_FAIL(nmis[0] == r, DELIVERY_TIMEOUT_MS, "self NMI %u never arrived (IF=0)", r);
  }
  printf("nmi: %u self NMIs with interrupts disabled\n", rounds);

  for (unsigned c = 1; c < n; c++) {
    for (uint32_t r = 1; r <= rounds; r++) {
      lapic_send_nmi(c);
      WAIT_OR_FAIL(nmis[c] == r, DELIVERY_TIMEOUT_MS, "NMI %u to CPU %u (in cli;hlt) never arrived", r, c);
    }
  }
  if (n > 1) printf("nmi: %u NMIs to each of %u AP(s) halted with IF=0\n", rounds, n - 1);

  for (unsigned c = 1; c < n; c++) {
    uint32_t base = nmis[c];
    hold[c] = 1;
    lapic_send_nmi(c);
    WAIT_OR_FAIL(nmis[c] == base + 1, DELIVERY_TIMEOUT_MS, "latch test: first NMI to CPU %u never arrived", c);
    lapic_send_nmi(c); /* CPU c is inside its handler: NMIs are blocked until its iretq */
    delay_us(20000);
    CHECK_MSG(nmis[c] == base + 1 && nested[c] == 0, "CPU %u took an NMI while still in its NMI handler", c);
    hold[c] = 0;
    WAIT_OR_FAIL(nmis[c] == base + 2, DELIVERY_TIMEOUT_MS,
                 "latch test: the NMI sent to CPU %u while it was in its NMI handler was lost (counted %u, want %u)",
                 c, nmis[c], base + 2);
  }
  if (n > 1) printf("nmi: an NMI sent during the NMI handler was held and delivered after iretq on each AP\n");

  echo = 1;
  for (unsigned c = 1; c < n; c++) {
    for (uint32_t r = 1; r <= rounds; r++) {
      uint32_t want0 = nmis[0] + 1, wantc = nmis[c] + 1;
      lapic_send_nmi(c);
      WAIT_OR_FAIL(nmis[c] == wantc && nmis[0] == want0, DELIVERY_TIMEOUT_MS,
                   "echo %u with CPU %u: CPU %u counted %u NMIs (want %u), CPU 0 counted %u (want %u)", r, c, c,
                   nmis[c], wantc, nmis[0], want0);
    }
  }
  echo = 0;
  delay_us(20000);
  CHECK_MSG(nmis[0] == rounds + rounds * (n - 1), "CPU 0 counted %u NMIs, expected %u", nmis[0],
            rounds + rounds * (n - 1));
  for (unsigned c = 1; c < n; c++)
    CHECK_MSG(nmis[c] == 2 * rounds + 2, "CPU %u counted %u NMIs, expected %u", c, nmis[c], 2 * rounds + 2);
  for (unsigned c = 0; c < n; c++) CHECK_MSG(nested[c] == 0, "CPU %u: %u nested NMIs", c, nested[c]);
  if (n > 1) printf("nmi: %u NMI echoes from each AP to CPU 0\n", rounds);
  guest_pass();
}
