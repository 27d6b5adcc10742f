/* Logical destination, flat model: every CPU < 8 sets DFR = flat and LDR = 1 << cpu. CPU 0 sends fixed
 * IPIs (vector 0x58) with logical destination masks: each single CPU, all CPUs, the odd CPUs, the even
 * CPUs, and 0xff (bits of absent CPUs included). Each CPU must receive exactly when its bit is set. */
#include "guest.h"

const char guest_name[] = "ipi_logical";

#define VEC_LOGICAL 0x58
#define FLAT_CPUS 8

static volatile uint32_t received[GUEST_MAX_CPUS];
static volatile uint32_t configured;
static uint32_t expected[GUEST_MAX_CPUS];
static unsigned ncpus;

static void on_logical(struct irq_frame *f) {
  received[this_cpu()]++;
  lapic_eoi();
}

static void set_flat_id(unsigned cpu) {
  lapic_write(LAPIC_DFR, 0xffffffff); /* flat model */
  lapic_write(LAPIC_LDR, cpu < FLAT_CPUS ? (1u << cpu) << 24 : 0);
  uint32_t dfr = lapic_read(LAPIC_DFR), ldr = lapic_read(LAPIC_LDR);
  CHECK_MSG((dfr >> 28) == 0xf, "CPU %u: DFR reads %#x after writing flat", cpu, dfr);
  CHECK_MSG((ldr >> 24) == (cpu < FLAT_CPUS ? 1u << cpu : 0), "CPU %u: LDR reads %#x", cpu, ldr);
  atomic_inc(&configured);
}

static void ap_main(unsigned cpu) {
  set_flat_id(cpu);
}

static bool all_delivered(void) {
  for (unsigned c = 0; c < ncpus; c++)
    if (received[c] < expected[c]) return false;
  return true;
}

static void send_mask(uint8_t mask) {
  for (unsigned c = 0; c < ncpus && c < FLAT_CPUS; c++)
    if (mask & (1u << c)) expected[c]++;
  lapic_send_ipi_or_fail(mask, ICR_FIXED | ICR_LOGICAL | VEC_LOGICAL);
  WAIT_OR_FAIL(all_delivered(), DELIVERY_TIMEOUT_MS, "logical mask %#x not delivered to every CPU in it", mask);
  delay_us(5000); /* give a wrongly targeted CPU time to show up */
  for (unsigned c = 0; c < ncpus; c++)
    CHECK_MSG(received[c] == expected[c], "logical mask %#x: CPU %u received %u, expected %u", mask, c,
              received[c], expected[c]);
}

void guest_main(void) {
  irq_set_handler(VEC_LOGICAL, on_logical);
  ncpus = smp_boot_all(ap_main);
  set_flat_id(0);
  WAIT_OR_FAIL(atomic_load(&configured) == ncpus, DELIVERY_TIMEOUT_MS, "only %u CPUs set their logical id", configured);
  irq_enable();
  unsigned flat = ncpus < FLAT_CPUS ? ncpus : FLAT_CPUS;
  uint8_t all = (uint8_t)((1u << flat) - 1);
  unsigned sends = 0;
  for (int rep = 0; rep < 3; rep++) {
    for (unsigned c = 0; c < flat; c++, sends++) send_mask((uint8_t)(1u << c));
    send_mask(all);
    if (all & 0xaa) send_mask(all & 0xaa);
    send_mask(all & 0x55);
    send_mask(0xff);
    sends += 3 + ((all & 0xaa) != 0);
  }
  printf("ipi_logical: %u flat-mode sends over %u CPU(s), every delivery exact\n", sends, ncpus);
  guest_pass();
}
