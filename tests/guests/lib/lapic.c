#include "io.h"
#include "lapic.h"
#include "runtime.h"

void lapic_enable(void) {
  lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | VECTOR_SPURIOUS);
  lapic_write(LAPIC_TPR, 0);
  lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED);
  lapic_write(LAPIC_LVT_ERROR, VECTOR_LAPIC_ERROR);
  lapic_write(LAPIC_ESR, 0);
}

static bool icr_wait_idle(void) {
  /* Each read may be a VM exit (~8 us on slow hosts): 200000 reads is >= a second there. */
  for (uint32_t i = 0; i < 200000; i++) {
    if (!(lapic_read(LAPIC_ICR_LOW) & ICR_BUSY)) return true;
    cpu_relax();
  }
  return false;
}

bool lapic_send_ipi(unsigned dest, uint32_t icr_low) {
  /* ICR high and low must be written back to back: a handler on this CPU sending its own IPI in between
   * would change the destination under us. */
  uint64_t flags = irq_save();
  bool ok = icr_wait_idle();
  if (ok) {
    lapic_write(LAPIC_ICR_HIGH, (uint32_t)dest << 24);
    lapic_write(LAPIC_ICR_LOW, icr_low);
    ok = icr_wait_idle();
  }
  irq_restore(flags);
  return ok;
}

void lapic_send_ipi_or_fail(unsigned dest, uint32_t icr_low) {
  if (!lapic_send_ipi(dest, icr_low))
    guest_fail_code(GUEST_EXIT_TIMEOUT, "ICR delivery status stuck busy (dest %u, icr %#x) on CPU %u", dest,
                    icr_low, this_cpu());
}

void lapic_timer_start(uint8_t vector, uint32_t initial, uint32_t lvt_flags, uint32_t divide) {
  lapic_write(LAPIC_TIMER_DIVIDE, divide);
  lapic_write(LAPIC_LVT_TIMER, lvt_flags | vector);
  lapic_write(LAPIC_TIMER_INITIAL, initial); /* writing the initial count (re)arms the timer */
}

void lapic_timer_stop(void) {
  lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED);
  lapic_write(LAPIC_TIMER_INITIAL, 0);
}
