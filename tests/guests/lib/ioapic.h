/* IOAPIC at 0xFEC00000 (indirect IOREGSEL/IOWIN access). */
#pragma once

#include "types.h"

#define IOAPIC_BASE 0xFEC00000u
#define IOAPIC_REG_ID 0x00
#define IOAPIC_REG_VERSION 0x01
#define IOAPIC_REG_REDTBL 0x10

#define IOAPIC_LEVEL (1u << 15)
#define IOAPIC_ACTIVE_LOW (1u << 13)
#define IOAPIC_LOGICAL (1u << 11)
#define IOAPIC_MASKED (1u << 16)
#define IOAPIC_REMOTE_IRR (1u << 14)

uint32_t ioapic_read(uint32_t reg);
void ioapic_write(uint32_t reg, uint32_t v);
unsigned ioapic_pin_count(void); /* max redirection entry + 1, from the version register */
/* Programs pin -> vector, fixed delivery, physical destination `dest`; flags: IOAPIC_LEVEL etc. Unmasked. */
void ioapic_route(unsigned pin, uint8_t vector, unsigned dest, uint32_t flags);
void ioapic_mask(unsigned pin);
uint64_t ioapic_read_entry(unsigned pin);
void ioapic_mask_all(void);
