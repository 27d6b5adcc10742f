/* PIT channel 2 as the reference clock; TSC calibrated against it. */
#pragma once

#include "types.h"

#define PIT_HZ 1193182u

static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)::"memory");
  return ((uint64_t)hi << 32) | lo;
}

/* PIT-measured busy wait of at least `us` microseconds; returns the microseconds the PIT actually counted
 * (more than asked when polls are slow). Fails the guest if channel 2 stops counting: a missing or stuck
 * PIT must not hang a test. */
uint64_t pit_wait_us(uint32_t us);

/* TSC frequency, calibrated against the PIT on first use (call it once on the BSP before APs need it). */
uint64_t tsc_hz(void);
uint64_t tsc_from_us(uint64_t us);
uint64_t tsc_to_us(uint64_t cycles);
void delay_us(uint32_t us); /* TSC-timed */

/* Spins until `cond` holds or `ms` milliseconds pass; evaluates to true if the condition held. */
#define WAIT_UNTIL(cond, ms)                                 \
  ({                                                         \
    uint64_t wait_deadline_ = rdtsc() + tsc_from_us((uint64_t)(ms) * 1000u); \
    bool wait_ok_ = true;                                    \
    while (!(cond)) {                                        \
      if (rdtsc() > wait_deadline_) {                        \
        wait_ok_ = (cond);                                   \
        break;                                               \
      }                                                      \
      cpu_relax();                                           \
    }                                                        \
    wait_ok_;                                                \
  })
