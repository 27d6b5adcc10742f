/* IOAPIC-routed serial interrupt: COM1's IRQ 4 goes through IOAPIC pin 4 (edge, active high, fixed,
 * physical) to vector 0x90 on CPU 0, then on the last CPU. A line is transmitted interrupt-driven: with
 * IER.THRE set, each THRE interrupt writes the next character; after the last one the handler clears IER.
 * Every character needs its own interrupt, so a lost edge stalls the line and times out. */
#include "guest.h"

const char guest_name[] = "ioapic_serial";

#define VEC_COM1 0x90
#define COM1_PIN 4

static char line[96];
static volatile uint32_t tx_pos, tx_len, tx_done;
static volatile uint32_t thre_irqs, other_irqs, wrong_cpu;
static volatile unsigned target_cpu;

static void on_com1(struct irq_frame *f) {
  if (this_cpu() != target_cpu) wrong_cpu++;
  uint8_t iir = inb(COM1 + UART_IIR); /* reading IIR acknowledges a THRE interrupt */
  if ((iir & UART_IIR_NO_INT) || (iir & UART_IIR_ID_MASK) != UART_IIR_THRE) {
    other_irqs++;
  } else {
    thre_irqs++;
    if (tx_pos < tx_len) {
      outb(COM1 + UART_THR, (uint8_t)line[tx_pos++]);
    } else {
      outb(COM1 + UART_IER, 0);
      tx_done = 1;
    }
  }
  lapic_eoi();
}

static void transmit_via(unsigned cpu) {
  int len = snprintf(line, sizeof line, "ioapic_serial: interrupt-driven line via CPU %u\n", cpu);
  tx_len = (uint32_t)len;
  tx_pos = 0;
  tx_done = 0;
  thre_irqs = other_irqs = wrong_cpu = 0;
  target_cpu = cpu;
  ioapic_route(COM1_PIN, VEC_COM1, cpu, 0);
  uint64_t entry = ioapic_read_entry(COM1_PIN);
  CHECK_MSG((entry & 0xff) == VEC_COM1 && !(entry & IOAPIC_MASKED) && (entry >> 56) == cpu,
            "IOAPIC pin %u reads back %#lx", COM1_PIN, entry);
  /* Enabling THRE while the transmitter is empty raises the first interrupt at once. */
  outb(COM1 + UART_IER, UART_IER_THRE);
  if (!WAIT_UNTIL(tx_done, 5000)) {
    outb(COM1 + UART_IER, 0);
    guest_fail_code(GUEST_EXIT_TIMEOUT, "via CPU %u: stalled after %u of %u characters (%u THRE interrupts)",
                    cpu, tx_pos, tx_len, thre_irqs);
  }
  ioapic_mask(COM1_PIN);
  CHECK_MSG(wrong_cpu == 0, "%u interrupts ran on a CPU other than %u", wrong_cpu, cpu);
  CHECK_MSG(thre_irqs == tx_len + 1, "%u THRE interrupts for %u characters", thre_irqs, tx_len);
  printf("ioapic_serial: CPU %u: %u THRE interrupts sent %u characters (%u without THRE cause)\n", cpu,
         thre_irqs, tx_len, other_irqs);
}

void guest_main(void) {
  irq_set_handler(VEC_COM1, on_com1);
  unsigned n = smp_boot_all(0);
  unsigned pins = ioapic_pin_count();
  CHECK_MSG(pins == 24, "IOAPIC has %u redirection entries, expected 24", pins);
  ioapic_mask_all();
  irq_enable();
  transmit_via(0);
  if (n > 1) transmit_via(n - 1);
  guest_pass();
}
