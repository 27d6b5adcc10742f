#include "io.h"
#include "ioapic.h"

uint32_t ioapic_read(uint32_t reg) {
  mmio_write32(IOAPIC_BASE, reg);
  return mmio_read32(IOAPIC_BASE + 0x10);
}

void ioapic_write(uint32_t reg, uint32_t v) {
  mmio_write32(IOAPIC_BASE, reg);
  mmio_write32(IOAPIC_BASE + 0x10, v);
}

unsigned ioapic_pin_count(void) { return ((ioapic_read(IOAPIC_REG_VERSION) >> 16) & 0xff) + 1; }

uint64_t ioapic_read_entry(unsigned pin) {
  uint32_t lo = ioapic_read(IOAPIC_REG_REDTBL + 2 * pin);
  uint32_t hi = ioapic_read(IOAPIC_REG_REDTBL + 2 * pin + 1);
  return ((uint64_t)hi << 32) | lo;
}

void ioapic_route(unsigned pin, uint8_t vector, unsigned dest, uint32_t flags) {
  /* Masked while the destination changes, then unmasked with the final low word. */
  ioapic_write(IOAPIC_REG_REDTBL + 2 * pin, IOAPIC_MASKED);
  ioapic_write(IOAPIC_REG_REDTBL + 2 * pin + 1, (uint32_t)dest << 24);
  ioapic_write(IOAPIC_REG_REDTBL + 2 * pin, (flags & ~IOAPIC_MASKED) | vector);
}

void ioapic_mask(unsigned pin) {
  uint32_t lo = ioapic_read(IOAPIC_REG_REDTBL + 2 * pin);
  ioapic_write(IOAPIC_REG_REDTBL + 2 * pin, lo | IOAPIC_MASKED);
}

void ioapic_mask_all(void) {
  unsigned n = ioapic_pin_count();
  for (unsigned pin = 0; pin < n; pin++) ioapic_mask(pin);
}
