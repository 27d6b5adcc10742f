/* Local xAPIC (MMIO at 0xFEE00000). */
#pragma once

#include "layout.h"
#include "types.h"

#define LAPIC_ID 0x020
#define LAPIC_VERSION 0x030
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0b0
#define LAPIC_LDR 0x0d0
#define LAPIC_DFR 0x0e0
#define LAPIC_SVR 0x0f0
#define LAPIC_ISR0 0x100
#define LAPIC_IRR0 0x200
#define LAPIC_ESR 0x280
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3e0

#define LAPIC_SVR_ENABLE 0x100
#define LAPIC_LVT_MASKED (1u << 16)
#define LAPIC_TIMER_PERIODIC (1u << 17)
#define LAPIC_TIMER_DIV1 0xb
#define LAPIC_TIMER_DIV16 0x3

/* ICR low word. */
#define ICR_FIXED (0u << 8)
#define ICR_LOWEST (1u << 8)
#define ICR_NMI (4u << 8)
#define ICR_INIT (5u << 8)
#define ICR_STARTUP (6u << 8)
#define ICR_LOGICAL (1u << 11)
#define ICR_BUSY (1u << 12) /* delivery status: send pending */
#define ICR_ASSERT (1u << 14)
#define ICR_LEVEL (1u << 15)
#define ICR_DEST_SELF (1u << 18)
#define ICR_DEST_ALL (2u << 18)
#define ICR_DEST_OTHERS (3u << 18)

#define VECTOR_LAPIC_ERROR 0xfe
#define VECTOR_SPURIOUS 0xff

static inline uint32_t lapic_read(uint32_t reg) { return *(volatile uint32_t *)(uintptr_t)(GUEST_LAPIC_BASE + reg); }
static inline void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t *)(uintptr_t)(GUEST_LAPIC_BASE + reg) = v; }
static inline unsigned lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }
static inline void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

/* Software-enables the LAPIC (SVR, spurious vector 0xff), TPR 0, timer masked, LVT error -> 0xfe. */
void lapic_enable(void);
/* Writes ICR (high then low) with interrupts off, waiting for delivery status idle before and after.
 * Returns false if the ICR stayed busy (~1 s); callers fail the test. */
bool lapic_send_ipi(unsigned dest, uint32_t icr_low);
/* Same, failing the guest on a stuck ICR. */
void lapic_send_ipi_or_fail(unsigned dest, uint32_t icr_low);
static inline void lapic_send_fixed(unsigned dest, uint8_t vector) { lapic_send_ipi_or_fail(dest, ICR_FIXED | vector); }
static inline void lapic_send_nmi(unsigned dest) { lapic_send_ipi_or_fail(dest, ICR_NMI); }

/* Timer: `lvt_flags` = LAPIC_TIMER_PERIODIC and/or LAPIC_LVT_MASKED; divide = LAPIC_TIMER_DIV*. */
void lapic_timer_start(uint8_t vector, uint32_t initial, uint32_t lvt_flags, uint32_t divide);
void lapic_timer_stop(void);
static inline uint32_t lapic_timer_current(void) { return lapic_read(LAPIC_TIMER_CURRENT); }
